"""SSML through :class:`SpeechService`: one engine call per span with its voice, speed and
language; exact silences at the output's rate and channels; dialog turns for whole-text engines;
the spoken text limited; warnings as a header; plain text untouched."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from api.engines.base import AudioChunk
from api.errors import InvalidRequestError
from api.synthesis.request import SpeechJob
from api.synthesis.service import conform

from .fakes import CHUNK_SAMPLES, RATE, FakeEngine, rig


def job(model: str, text: str, **kw: object) -> SpeechJob:
    fields: dict[str, object] = {"model": model, "text": text, "voice": "af_alloy", "response_format": "pcm"}
    return SpeechJob(**(fields | kw))  # type: ignore[arg-type]


def test_spans_become_engine_calls_with_their_voice_rate_and_exact_silences() -> None:
    engine = FakeEngine("preset", "preset", channels=2)
    r = rig(engine)
    ssml = (
        '<speak>Hello there.<break time="300ms"/>'
        '<prosody rate="x-slow">Slowly now.</prosody>'
        '<voice name="jm_kumo">Another voice.</voice><unknown>Odd.</unknown></speak>'
    )
    result = asyncio.run(r.service.collect(job("preset", ssml, speed=1.5)))
    calls = engine.calls
    assert [c.chunks for c in calls] == [["Hello there."], ["Slowly now."], ["Another voice."], ["Odd."]]
    assert calls[0].options.speed == 1.5 and calls[1].options.speed == pytest.approx(0.75)
    assert (
        getattr(calls[2].voice, "name", None) == "jm_kumo"
        and getattr(calls[0].voice, "name", None) == "af_alloy"
    )
    x = result.audio.samples
    assert x.shape[0] == 2 and result.audio.sample_rate == RATE
    # the break: exactly 0.3 s of zeros right after the first span's audio, on both channels
    gap = x[:, CHUNK_SAMPLES : CHUNK_SAMPLES + round(0.3 * RATE)]
    assert gap.shape[-1] == round(0.3 * RATE) and not gap.any()
    assert x[:, CHUNK_SAMPLES + round(0.3 * RATE)].all()
    assert "unknown" in result.headers["X-SSML-Warnings"]
    r.assert_released()


def test_dialog_engines_get_the_turn_in_effect() -> None:
    engine = FakeEngine("dialog", "preset", whole_text=True)
    r = rig(engine)
    asyncio.run(r.service.collect(job("dialog", "<speak>[S1] Hi there.<p>And on.</p>[S2] Yes.</speak>")))
    texts = [c.chunks[0] for c in engine.calls]
    assert texts[0].startswith("[S1]") and texts[-1].startswith("[S2]")
    assert all(t.startswith("[S") for t in texts)


def test_the_spoken_text_is_limited_not_the_markup_and_bad_ssml_is_400() -> None:
    r = rig(FakeEngine("preset", "preset"), max_input_chars=20)
    markup = "<speak>" + '<break time="1ms"/>' * 2 + "Short words.</speak>"
    assert len(markup) > 20
    asyncio.run(r.service.collect(job("preset", markup)))
    with pytest.raises(InvalidRequestError) as err:
        asyncio.run(r.service.collect(job("preset", "<speak>" + "word " * 10 + "</speak>")))
    assert err.value.code == "string_above_max_length"
    with pytest.raises(InvalidRequestError) as err:
        asyncio.run(r.service.collect(job("preset", "<speak><p>open</speak>")))
    assert err.value.code == "invalid_ssml" and "line 1" in err.value.message
    r.assert_released()


def test_plain_text_and_explicit_formats() -> None:
    engine = FakeEngine("preset", "preset")
    r = rig(engine)
    asyncio.run(r.service.collect(job("preset", "<speak>read me</speak>", input_format="text")))
    assert engine.calls[-1].chunks == ["<speak>read me</speak>"]
    with pytest.raises(InvalidRequestError):  # input_format ssml: parsed even without <speak>
        asyncio.run(r.service.collect(job("preset", "  read <b>me", input_format="ssml")))
    asyncio.run(r.service.collect(job("preset", "1 < 2 and 3 > 2")))
    assert engine.calls[-1].chunks == ["1 < 2 and 3 > 2"]


def test_conform_resamples_and_matches_channels() -> None:
    chunk = AudioChunk(np.ones((1, 1600), dtype=np.float32) * 0.5, 16000)
    out = conform(chunk, 24000, 2)
    assert out.samples.shape == (2, 2400) and out.sample_rate == 24000
