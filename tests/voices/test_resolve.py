"""``VoiceResolver.for_engine``: the one place that decides what a speech request's voice string is,
given the kind of voice the engine takes (aliases, presets and the Kokoro fallback, source forms)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from api.engines.base import PresetVoice, ReferenceVoice
from api.errors import InvalidRequestError, NotFoundError
from api.settings import Settings
from api.voices.sources import VoiceResolver
from api.voices.store import FileVoiceStore
from tests.synthesis.fakes import speechlike, wav_bytes, wav_decoder

WAV = base64.b64encode(wav_bytes(speechlike(1.0), 16000)).decode()
ALIASES = {"alloy": "af_alloy", "echo": "am_echo"}


class Presets:
    """The engine's preset list, counting how often it is asked for."""

    def __init__(self, *names: str) -> None:
        self.names, self.calls = list(names), 0

    def __call__(self) -> list[str]:
        self.calls += 1
        return self.names


def _resolver(store: FileVoiceStore | None = None) -> VoiceResolver:
    settings = Settings(allow_downloads=False, voice_aliases=ALIASES, kokoro_default_voice="jm_kumo")
    return VoiceResolver(settings, store, decoder=wav_decoder)


def preset(spec: str, presets: Presets | None = None) -> object:
    return _resolver().for_engine(
        spec, kind="preset", engine_name="kokoro", presets=presets or Presets("af_alloy")
    )


def test_a_preset_engine_takes_names_and_aliases() -> None:
    assert preset("af_bella") == PresetVoice("af_bella")  # the engine decides whether it exists
    assert preset("af_a+af_b(0.5)") == PresetVoice("af_a+af_b(0.5)")
    assert preset("alloy") == PresetVoice("af_alloy")
    assert preset("ALLOY") == PresetVoice("af_alloy")  # aliases are case-insensitive


def test_an_alias_missing_from_the_pack_falls_back_to_the_default_voice() -> None:
    presets = Presets("af_alloy")
    assert preset("echo", presets) == PresetVoice("jm_kumo")
    assert presets.calls == 1
    other = Presets()
    assert preset("af_bella", other) == PresetVoice("af_bella") and other.calls == 0  # no alias: not asked


def test_a_long_spec_is_never_an_alias() -> None:
    spec = "alloy" + " " * 60
    assert preset(spec) == PresetVoice(spec)


@pytest.mark.parametrize(
    "spec", ["file+a.wav", "url+https://example.com/a.wav", "base64+" + WAV, "data:audio/wav;base64,AA"]
)
def test_a_preset_engine_refuses_voice_sources(spec: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        preset(spec)
    assert info.value.status_code == 400 and info.value.param == "voice"
    assert "kokoro" in info.value.message


def test_a_preset_engine_never_looks_up_registered_voices(tmp_path: Path) -> None:
    store = FileVoiceStore(tmp_path, max_per_namespace=10)
    resolver = _resolver(store)
    voice = resolver.resolve("base64+" + WAV)
    assert isinstance(voice, ReferenceVoice)
    meta = store.create(
        "default", "mine", voice.samples, voice.sample_rate, transcript="Hi.", transcript_source="given"
    )
    got = resolver.for_engine(meta.name, kind="preset", engine_name="kokoro", presets=Presets())
    assert got == PresetVoice(meta.name)
    cloned = resolver.for_engine(meta.name, kind="clone", engine_name="zipvoice", presets=Presets())
    assert isinstance(cloned, ReferenceVoice) and cloned.voice_id == meta.id


def test_a_clone_engine_gets_the_sources() -> None:
    resolver, presets = _resolver(), Presets()
    voice = resolver.for_engine(
        "base64+" + WAV, kind="clone", engine_name="zipvoice", presets=presets, prompt_text="Hi."
    )
    assert isinstance(voice, ReferenceVoice)
    assert voice.source == "base64" and voice.transcript == "Hi." and voice.transcript_source == "given"
    # aliases apply first; an unregistered name is a preset (the engine refuses it), an id a 404
    assert resolver.for_engine("alloy", kind="clone", engine_name="z", presets=presets) == PresetVoice(
        "af_alloy"
    )
    with pytest.raises(NotFoundError):
        resolver.for_engine("voice_" + "0" * 16, kind="clone", engine_name="z", presets=presets)
    assert presets.calls == 0
