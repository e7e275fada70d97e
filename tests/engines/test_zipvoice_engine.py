"""The ZipVoice engine with the tiny reference checkpoints: weights resolution, prompt cache, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from api.audio.decode import decode_audio
from api.engines.base import PresetVoice, ReferenceVoice, SynthesisOptions
from api.engines.zipvoice import PromptCache, ZipVoiceEngine
from api.errors import InvalidRequestError, ServiceUnavailableError
from api.settings import Settings
from api.voices.sources import audio_digest

PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def engine(reference_dir: Path) -> ZipVoiceEngine:
    settings = Settings(
        zipvoice_model_dir=reference_dir / "models",
        vocos_model_dir=reference_dir / "vocos-mel-24khz-tiny",
        allow_downloads=False,
        prompt_cache_size=2,
    )
    e = ZipVoiceEngine(settings, "zipvoice_distill")
    assert e.availability().ok
    e.load()
    return e


@pytest.fixture(scope="module")
def voice(reference_dir: Path) -> ReferenceVoice:
    samples, rate = decode_audio((reference_dir / "audio" / "prompt.wav").read_bytes(), max_seconds=60)
    return ReferenceVoice(
        samples, rate, PROMPT_TEXT, audio_digest(samples, rate), "file", transcript_source="given"
    )


def test_missing_weights_say_what_to_put_where(tmp_path: Path) -> None:
    settings = Settings(
        zipvoice_model_dir=tmp_path, vocos_model_dir=tmp_path / "vocos", allow_downloads=False
    )
    e = ZipVoiceEngine(settings, "zipvoice")
    avail = e.availability()
    assert not avail.ok and avail.reason is not None
    for needle in (
        "model.pt",
        "model.json",
        "tokens.txt",
        "config.yaml",
        "pytorch_model.bin",
        "k2-fsa/ZipVoice",
    ):
        assert needle in avail.reason
    with pytest.raises(ServiceUnavailableError):
        e.load()


def test_prompt_is_prepared_once_per_clip(engine: ZipVoiceEngine, voice: ReferenceVoice) -> None:
    before_hits, before_misses = engine.prompts.hits, engine.prompts.misses
    opts = SynthesisOptions(seed=1, num_steps=2)
    list(engine.synthesize(["Hello there."], voice, opts))
    list(engine.synthesize(["Hello again."], voice, opts))
    assert engine.prompts.misses - before_misses <= 1
    assert engine.prompts.hits - before_hits >= 1


def test_seed_determinism_and_defaults(engine: ZipVoiceEngine, voice: ReferenceVoice) -> None:
    a = next(engine.synthesize(["Same seed."], voice, SynthesisOptions(seed=5, num_steps=2))).samples
    b = next(engine.synthesize(["Same seed."], voice, SynthesisOptions(seed=5, num_steps=2))).samples
    c = next(engine.synthesize(["Same seed."], voice, SynthesisOptions(seed=6, num_steps=2))).samples
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert engine.defaults.num_steps == 8 and engine.defaults.guidance_scale == 3.0


def test_preset_or_untranscribed_voice_is_rejected(engine: ZipVoiceEngine, voice: ReferenceVoice) -> None:
    with pytest.raises(InvalidRequestError):
        list(engine.synthesize(["x"], PresetVoice("alloy"), SynthesisOptions()))
    from dataclasses import replace

    with pytest.raises(InvalidRequestError):
        list(engine.synthesize(["x"], replace(voice, transcript=None), SynthesisOptions()))


def test_prompt_cache_is_bounded() -> None:
    cache = PromptCache(2)
    for i in range(5):
        cache.put(str(i), i)
    assert len(cache) == 2 and cache.get("4") == 4 and cache.get("0") is None


def test_remove_long_silence_setting_reaches_the_pipeline(
    engine: ZipVoiceEngine, voice: ReferenceVoice, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []
    original = engine._pipeline.generate

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("remove_long_sil"))
        return original(*args, **kwargs)

    monkeypatch.setattr(engine._pipeline, "generate", spy)
    monkeypatch.setattr(engine._settings, "zipvoice_remove_long_silence", True)
    list(engine.synthesize(["Pause test."], voice, SynthesisOptions(seed=1, num_steps=2)))
    assert seen == [True]


def test_onnx_chunk_setting_bounds_the_decoder_passes(reference_dir: Path, voice: ReferenceVoice) -> None:
    """ZIPVOICE_ONNX_CHUNK_SECONDS reaches the torch-free pipeline: with a bound below the prompt's
    own length every clause is its own decoder pass (upstream's 25 s would give one pass)."""
    pytest.importorskip("onnxruntime")
    from api.zipvoice.pipeline import NumpyZipVoicePipeline

    settings = Settings(
        zipvoice_model_dir=reference_dir / "models",
        vocos_model_dir=reference_dir / "vocos-mel-24khz-tiny",
        allow_downloads=False,
        engine="onnx",
        num_threads=1,
        zipvoice_onnx_chunk_seconds=1.0,
    )
    e = ZipVoiceEngine(settings, "zipvoice_distill")
    e.load()
    pipe = e._pipeline
    assert isinstance(pipe, NumpyZipVoicePipeline) and pipe.chunk_target_s == 1.0
    frames: list[int] = []
    original = pipe.model.sample_chunk

    def spy(
        tokens: object, prompt_tokens: object, prompt_features: object, *args: object, **kw: object
    ) -> object:
        out = original(tokens, prompt_tokens, prompt_features, *args, **kw)  # type: ignore[arg-type]
        frames.append(int(np.asarray(prompt_features).shape[0]) + int(np.asarray(out).shape[0]))
        return out

    pipe.model.sample_chunk = spy  # type: ignore[method-assign, assignment]
    text = "One clause here, another clause there, and a third clause to end it."
    (chunk,) = e.synthesize([text], voice, SynthesisOptions(seed=1, num_steps=1))
    assert len(frames) == 3
    assert chunk.samples.shape[-1] > 0
