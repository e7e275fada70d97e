"""Word timestamps through :class:`SpeechService` (fake engine, fake transcriber): every word of the
input once, in order, with its offsets in ``input``; times shifted by each chunk's start and never
past the audio; SSML words mapped back into the markup; silences move later words."""

from __future__ import annotations

import asyncio

from api.synthesis.request import SpeechJob
from api.synthesis.service import SpeechRun

from .fakes import CHUNK_SAMPLES, RATE, FakeEngine, rig

TEXT = "Hello there, my friend. This is the second sentence. And a third one."


def job(text: str, **kw: object) -> SpeechJob:
    fields: dict[str, object] = {
        "model": "preset",
        "text": text,
        "voice": "af_alloy",
        "response_format": "pcm",
    }
    return SpeechJob(**(fields | {"timestamps": True} | kw))  # type: ignore[arg-type]


def timed(j: SpeechJob) -> SpeechRun:
    # the aligner is the reference transcriber (the fake) when both name the same model
    r = rig(FakeEngine("preset", "preset"), align_whisper_model="base", whisper_model="base")

    async def go() -> SpeechRun:
        run = await r.service.start(j)
        try:
            await run.collect()
        finally:
            await run.aclose()
        return run

    run = asyncio.run(go())
    r.assert_released()
    return run


def test_plain_text_words_cover_the_input_in_order_within_the_audio() -> None:
    run = timed(job(TEXT))
    words = run.words
    assert [w.word for w in words] == TEXT.split()
    assert all(TEXT[w.char_start : w.char_end] == w.word for w in words)
    assert all(0 <= w.start <= w.end <= run.seconds + 1e-9 for w in words)
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    # the second chunk's words start in the second chunk's audio
    assert words[4].start >= CHUNK_SAMPLES / RATE - 1e-9


def test_ssml_words_map_back_into_the_markup_and_breaks_shift_them() -> None:
    ssml = '<speak>One two.<break time="1s"/>Three <sub alias="four">4</sub> five.</speak>'
    run = timed(job(ssml))
    words = run.words
    assert [w.word for w in words] == ["One", "two.", "Three", "four", "five."]
    assert ssml[words[0].char_start : words[0].char_end] == "One"
    assert ssml[words[2].char_start : words[2].char_end] == "Three"
    assert "<sub" in ssml[words[3].char_start : words[3].char_end]
    assert words[2].start >= CHUNK_SAMPLES / RATE + 1.0 - 1e-6
    assert all(w.end <= run.seconds + 1e-9 for w in words)


def test_a_separate_align_model_is_its_own_transcriber() -> None:
    r = rig(FakeEngine("preset", "preset"), align_whisper_model="tiny.en", whisper_model="base")
    aligner = r.service.aligner()
    assert aligner is not None and aligner is not r.transcriber and aligner is r.service.aligner()


def test_without_timestamps_no_words() -> None:
    assert timed(job(TEXT, timestamps=False)).words == []
