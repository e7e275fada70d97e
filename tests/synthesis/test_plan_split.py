"""The plan's chunks (``split_for`` through ``SpeechService``): a streamed request starts with a short
first clause, whatever the engine's chunk limit; a whole (non-streamed) request is chunked as before."""

from __future__ import annotations

import asyncio

import pytest

from api.engines.kokoro import KokoroEngine
from api.engines.zipvoice import ZipVoiceEngine
from api.settings import Settings
from api.synthesis.request import SpeechJob
from api.synthesis.service import split_for
from api.text.split import FIRST_MAX_CHARS, FIRST_MIN_CHARS, split_sentences, split_text

from .fakes import FakeEngine, rig

CLAUSE = "The old lighthouse stood at the edge of the cliff,"
TEXT = (
    f"{CLAUSE} its white paint peeling in the salty wind. Every evening the keeper climbed the narrow "
    "stairs to light the lamp, counting each step as he went. Ships passing in the night relied on its "
    "steady beam to guide them safely past the rocks below. In the village, children told stories about "
    "the keeper and the strange sounds that came from the tower."
)
FIRST_SENTENCE = split_sentences(TEXT)[0]


def _chunks(max_chunk_chars: int, **kw: object) -> list[str]:
    r = rig(FakeEngine("clone", "preset", max_chunk_chars=max_chunk_chars))
    fields: dict[str, object] = {
        "model": "clone",
        "text": TEXT,
        "voice": "af_alloy",
        "response_format": "pcm",
    }
    asyncio.run(r.service.collect(SpeechJob(**(fields | kw))))  # type: ignore[arg-type]
    (call,) = r.engines["clone"].calls
    r.assert_released()
    return call.chunks


@pytest.mark.parametrize("max_chunk_chars", [300, 400, 150, 120])
def test_a_streamed_plan_starts_with_the_short_first_clause(max_chunk_chars: int) -> None:
    chunks = _chunks(max_chunk_chars)
    assert chunks[0] == CLAUSE and len(chunks[0]) < len(FIRST_SENTENCE)
    # the rest is packed as usual, nothing lost
    assert chunks[1:] == split_text(TEXT[len(CLAUSE) :], max_chunk_chars)
    assert " ".join(chunks) == TEXT


def test_a_whole_request_is_chunked_as_before() -> None:
    chunks = _chunks(300, streaming=False)
    assert chunks == split_text(TEXT, 300)
    assert chunks[0].startswith(FIRST_SENTENCE + " ")  # the first sentence is not cut
    assert " ".join(chunks) == TEXT


@pytest.mark.parametrize("max_chunk_chars", [1, 10, 30, 60, 90])
def test_any_chunk_limit_keeps_the_lead_within_it(max_chunk_chars: int) -> None:
    chunks = _chunks(max_chunk_chars)
    assert all(0 < len(c) <= max_chunk_chars for c in chunks)
    assert "".join(chunks).replace(" ", "") == TEXT.replace(" ", "")
    if max_chunk_chars >= FIRST_MIN_CHARS + 10:
        # cut between words, at least the minimum
        assert TEXT.startswith(chunks[0] + " ") and len(chunks[0]) >= FIRST_MIN_CHARS


def test_the_real_engines_streamed_plans_lead_with_the_clause() -> None:
    settings = Settings(allow_downloads=False)
    for engine in (ZipVoiceEngine(settings, "zipvoice_distill"), KokoroEngine(settings)):
        streamed = split_for(engine, TEXT, streaming=True)
        assert streamed[0] == CLAUSE and len(streamed[0]) <= FIRST_MAX_CHARS
        assert split_for(engine, streamed[0], streaming=True) == [CLAUSE]  # a request for it alone: one chunk
        assert split_for(engine, TEXT, streaming=False) == split_text(TEXT, engine.max_chunk_chars)


def test_streamed_ssml_cuts_only_the_first_span() -> None:
    r = rig(FakeEngine("clone", "preset"))
    ssml = f'<speak>{TEXT}<break time="100ms"/>{TEXT}</speak>'
    job = SpeechJob(model="clone", text=ssml, voice="af_alloy", response_format="pcm")
    asyncio.run(r.service.collect(job))
    first, second = r.engines["clone"].calls
    assert first.chunks[0] == CLAUSE and second.chunks == split_text(TEXT, 400)
