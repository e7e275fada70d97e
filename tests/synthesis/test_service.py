"""``SpeechService``: the one entry point (``start`` → ``SpeechRun``; ``collect``/``synthesize``), on fake
engines and a fake transcriber: plan and chunking, priority, voice, errors with their status, usage
and metrics recorded once, cancellation, and every slot released on every path."""

from __future__ import annotations

import asyncio
import base64
import threading
import time

import numpy as np
import pytest

from api.engines.base import EngineDefaults, PresetVoice, PriorityProfile, ReferenceVoice
from api.errors import InvalidRequestError, NotFoundError, RateLimitError, ServiceUnavailableError
from api.synthesis.request import SpeechJob
from api.synthesis.service import SpeechRun

from .fakes import CHUNK_SAMPLES, RATE, FakeEngine, rig, speechlike, wav_bytes

TEXT = "Hello there, my friend. This is the second sentence. And a third one."
CLIP = "base64+" + base64.b64encode(wav_bytes(speechlike(3.0), 16000)).decode()


def job(model: str = "clone", **kw: object) -> SpeechJob:
    fields: dict[str, object] = {"model": model, "text": TEXT, "voice": "af_alloy", "response_format": "pcm"}
    return SpeechJob(**(fields | kw))  # type: ignore[arg-type]


async def drain(run: SpeechRun) -> bytes:
    try:
        return b"".join([piece async for piece in run])
    finally:
        await run.aclose()


# -- plan and chunking ------------------------------------------------------------------------


def test_streaming_plan_speaks_the_first_clause_alone() -> None:
    r = rig(FakeEngine("preset", "preset"))

    async def go() -> tuple[bytes, SpeechRun]:
        run = await r.service.start(job("preset"))
        return await drain(run), run

    data, run = asyncio.run(go())
    (call,) = r.engines["preset"].calls
    assert call.chunks[0] == "Hello there, my friend." and len(call.chunks) == 2
    assert " ".join(call.chunks) == TEXT
    # pcm: 16-bit mono, every sample of every chunk
    assert len(data) == 2 * CHUNK_SAMPLES * len(call.chunks)
    assert run.seconds == pytest.approx(len(call.chunks) * CHUNK_SAMPLES / RATE)
    assert run.headers["X-Model-Backend"] == "preset" and run.media_type.startswith("audio/")
    r.assert_released()


def test_whole_jobs_are_not_split_at_the_first_clause_and_whole_text_engines_get_all() -> None:
    r = rig(FakeEngine("preset", "preset"), FakeEngine("dialog", "clone", whole_text=True))
    asyncio.run(r.service.collect(job("preset", streaming=False)))
    assert r.engines["preset"].calls[0].chunks == [TEXT]
    asyncio.run(r.service.collect(job("dialog", voice=CLIP)))
    assert r.engines["dialog"].calls[0].chunks == [TEXT]
    r.assert_released()


def test_the_request_options_reach_the_engine() -> None:
    r = rig(FakeEngine("clone"))
    asyncio.run(
        r.service.collect(
            job(voice=CLIP, speed=1.5, seed=7, lang="en-us", num_steps=5, guidance_scale=2.0, t_shift=0.7)
        )
    )
    options = r.engines["clone"].calls[0].options
    assert (options.speed, options.seed, options.lang) == (1.5, 7, "en-us")
    assert (options.num_steps, options.guidance_scale, options.t_shift) == (5, 2.0, 0.7)


def test_synthesize_encodes_one_whole_file() -> None:
    r = rig(FakeEngine("preset", "preset"))
    data, result = asyncio.run(r.service.synthesize(job("preset", response_format="wav", streaming=False)))
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert result.audio.samples.shape == (1, CHUNK_SAMPLES) and result.backend == "preset"  # one chunk: whole
    assert result.usage["output_tokens"] == round(result.audio.duration * 50)


# -- recorded once ----------------------------------------------------------------------------


def test_usage_metrics_and_rtf_are_recorded_once() -> None:
    engine = FakeEngine("clone", defaults=EngineDefaults(6, 1.0, 0.5))
    r = rig(engine)

    async def go() -> SpeechRun:
        run = await r.service.start(job(voice=CLIP, owner="k1"))
        await drain(run)
        await run.aclose()  # a second close changes nothing
        return run

    run = asyncio.run(go())
    assert r.count("clone", "200") == 1
    usage = asyncio.run(r.limits.usage("k1"))["k1"]
    assert usage.requests == 1 and usage.audio_seconds == pytest.approx(run.seconds)
    assert usage.input_characters == len(TEXT)
    assert run.usage == {
        "input_tokens": len(TEXT),
        "output_tokens": round(run.seconds * 50),
        "total_tokens": len(TEXT) + round(run.seconds * 50),
    }
    # the RTF is keyed by the engine's declared default steps (the request gave none)
    assert set(r.rtf.snapshot()) == {"clone@6"}
    seconds = r.metrics.registry.get_sample_value("zvs_audio_seconds_total", {"model": "clone"})
    assert seconds == pytest.approx(run.seconds)
    assert r.metrics.registry.get_sample_value("zvs_synthesis_chunks_total", {"model": "clone"}) == 2


def test_a_run_abandoned_midway_records_the_audio_it_made() -> None:
    r = rig(FakeEngine("preset", "preset", max_chunk_chars=10))

    async def go() -> SpeechRun:
        run = await r.service.start(job("preset", owner="k2"))
        it = aiter(run)
        await anext(it)
        await run.aclose()
        return run

    run = asyncio.run(go())
    assert r.count("preset", "200") == 0
    usage = asyncio.run(r.limits.usage("k2"))["k2"]
    assert usage.requests == 1 and usage.audio_seconds == pytest.approx(run.seconds) and run.seconds > 0
    r.assert_released()


# -- cancellation ---------------------------------------------------------------------------


def test_dropping_a_run_stops_the_producer_within_one_chunk() -> None:
    engine = FakeEngine("preset", "preset", max_chunk_chars=12, delay=0.05)
    r = rig(engine)
    text = " ".join(f"Sentence {i}." for i in range(60))

    async def go() -> int:
        run = await r.service.start(job("preset", text=text))
        await anext(aiter(run))
        made = engine.produced
        await run.aclose()
        return made

    made = asyncio.run(go())
    assert len(engine.calls[0].chunks) >= 30
    # at most the chunk in progress and the prefetched one more after the drop
    assert engine.produced <= made + 2
    r.assert_released()


def test_a_run_never_read_still_releases_its_slot() -> None:
    r = rig(FakeEngine("preset", "preset"), concurrency=1, queue=0)

    async def go() -> None:
        run = await r.service.start(job("preset"))
        assert r.limiter.in_flight == 1
        with pytest.raises(RateLimitError):  # the one slot is held, no queue
            await r.service.start(job("preset"))
        await run.aclose()
        await drain(await r.service.start(job("preset")))

    asyncio.run(go())
    r.assert_released()


# -- priority -----------------------------------------------------------------------------------


def _tunable() -> tuple[FakeEngine, FakeEngine]:
    quick = FakeEngine(
        "quick",
        priority_profiles={
            "speed": PriorityProfile(4, 3.0, rank=0),
            "quality": PriorityProfile(8, 3.0, rank=1),
        },
    )
    fine = FakeEngine(
        "fine",
        priority_profiles={
            "speed": PriorityProfile(8, 1.0, rank=1),
            "quality": PriorityProfile(16, 1.0, rank=0),
        },
    )
    return quick, fine


def test_priority_picks_among_the_declared_profiles() -> None:
    quick, fine = _tunable()
    r = rig(quick, fine, FakeEngine("preset", "preset"))
    asyncio.run(r.service.collect(job("fine", voice=CLIP, priority="speed")))
    assert not fine.calls and quick.calls[0].options.num_steps == 4
    assert quick.calls[0].options.guidance_scale == 3.0
    asyncio.run(r.service.collect(job("quick", voice=CLIP, priority="quality", num_steps=3)))
    assert fine.calls[0].options.num_steps == 3  # explicit values win
    assert fine.calls[0].options.guidance_scale == 1.0
    # an engine that declares no profile ignores priority
    asyncio.run(r.service.collect(job("preset", priority="speed")))
    assert r.engines["preset"].calls[0].options.num_steps is None


def test_priority_skips_an_unavailable_engine_and_503_when_none_is_left() -> None:
    quick, fine = _tunable()
    quick.available = False
    r = rig(quick, fine)
    asyncio.run(r.service.collect(job("quick", voice=CLIP, priority="speed")))
    assert fine.calls[0].options.num_steps == 8
    fine.available = False
    with pytest.raises(ServiceUnavailableError) as info:
        asyncio.run(r.service.collect(job("fine", voice=CLIP, priority="speed")))
    assert info.value.status_code == 503
    r.assert_released()


# -- voices ----------------------------------------------------------------------------------


def test_a_preset_engine_gets_a_preset_and_a_clone_engine_a_prepared_clip() -> None:
    r = rig(
        FakeEngine("preset", "preset"), FakeEngine("clone"), voice_aliases={"alloy": "af_alloy", "x": "zz"}
    )
    asyncio.run(r.service.collect(job("preset", voice="alloy")))
    asyncio.run(r.service.collect(job("preset", voice="x")))
    assert [c.voice for c in r.engines["preset"].calls] == [PresetVoice("af_alloy"), PresetVoice("jm_kumo")]
    result = asyncio.run(r.service.collect(job(voice=CLIP)))
    voice = r.engines["clone"].calls[0].voice
    assert isinstance(voice, ReferenceVoice)
    assert voice.sample_rate == 24000 and voice.transcript == r.transcriber.text
    assert voice.transcript_source == "whisper" and result.headers["X-Prompt-Transcript-Source"] == "whisper"
    assert r.transcriber.calls >= 1


def test_reference_work_holds_a_reference_slot_not_a_synthesis_slot() -> None:
    r = rig(FakeEngine("preset", "preset"), FakeEngine("clone"), concurrency=1, queue=0)
    entered, release = threading.Event(), threading.Event()
    inner = r.service.resolver.decoder  # type: ignore[attr-defined]

    def slow_decoder(data: bytes, **kw: object) -> tuple[np.ndarray, int]:
        entered.set()
        assert release.wait(10)
        return inner(data, **kw)  # type: ignore[no-any-return]

    r.service.resolver.decoder = slow_decoder  # type: ignore[attr-defined]

    async def go() -> None:
        slow = asyncio.create_task(r.service.collect(job(voice=CLIP)))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        assert r.reference_limiter.in_flight == 1 and r.limiter.in_flight == 0
        # the reference queue is full: another clone is refused at once, with Retry-After
        with pytest.raises(RateLimitError) as info:
            await r.service.start(job(voice=CLIP))
        assert info.value.status_code == 429 and "Retry-After" in info.value.headers
        # a preset voice needs no reference slot, and the one synthesis slot is free
        await r.service.collect(job("preset"))
        release.set()
        result = await slow
        assert result.backend == "clone"

    asyncio.run(go())
    assert r.count("clone", "429") == 1
    r.assert_released()


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "error", "status"),
    [
        ({"text": "   "}, InvalidRequestError, 400),
        ({"text": "a" * 5000}, InvalidRequestError, 400),
        ({"model": "nope"}, NotFoundError, 404),
        ({"model": "preset", "voice": "url+https://example.com/a.wav"}, InvalidRequestError, 400),
        ({"model": "off"}, ServiceUnavailableError, 503),
        ({"voice": "base64+%%%"}, InvalidRequestError, 400),
    ],
)
def test_errors_have_their_status_before_any_audio(kw: dict[str, object], error: type, status: int) -> None:
    r = rig(
        FakeEngine("preset", "preset"),
        FakeEngine("clone"),
        FakeEngine("off", available=False),
        max_input_chars=4096,
    )
    with pytest.raises(error) as info:
        asyncio.run(r.service.start(job(**kw)))
    assert info.value.status_code == status
    label = str(kw.get("model", "clone"))
    assert r.count("unknown" if label == "nope" else label, str(status)) == 1
    assert all(not e.calls for e in r.engines.values())
    r.assert_released()


def test_quota_used_up_is_429_before_any_work() -> None:
    r = rig(FakeEngine("preset", "preset"), quota=0.1)
    asyncio.run(r.service.collect(job("preset", owner="k")))  # 0.2 s: crosses the quota, still completes
    with pytest.raises(RateLimitError) as info:
        asyncio.run(r.service.start(job("preset", owner="k")))
    assert info.value.status_code == 429 and len(r.engines["preset"].calls) == 1
    asyncio.run(r.service.collect(job("preset", owner="other")))  # another key is not affected
    r.assert_released()


def test_an_error_in_the_first_chunk_is_raised_by_start() -> None:
    r = rig(FakeEngine("preset", "preset", fail_at=0))
    with pytest.raises(ServiceUnavailableError):
        asyncio.run(r.service.start(job("preset")))
    assert r.count("preset", "503") == 1
    r.assert_released()


def test_a_mid_stream_error_ends_the_stream_and_is_counted() -> None:
    r = rig(FakeEngine("preset", "preset", fail_at=1, max_chunk_chars=10))

    async def go() -> tuple[bytes, SpeechRun]:
        run = await r.service.start(job("preset", owner="k"))
        return await drain(run), run

    data, run = asyncio.run(go())
    assert len(data) == 2 * CHUNK_SAMPLES  # the first chunk only: a truncated stream
    assert r.count("preset", "503") == 1 and r.count("preset", "200") == 0
    usage = asyncio.run(r.limits.usage("k"))["k"]
    assert usage.audio_seconds == pytest.approx(run.seconds)
    # collect (a whole file) raises it instead
    with pytest.raises(ServiceUnavailableError):
        asyncio.run(r.service.collect(job("preset")))
    assert r.count("preset", "503") == 2
    r.assert_released()


def test_a_run_is_consumed_once() -> None:
    r = rig(FakeEngine("preset", "preset"))

    async def go() -> None:
        run = await r.service.start(job("preset"))
        try:
            aiter(run)
            assert aiter(run) is aiter(run)
            with pytest.raises(RuntimeError):
                await run.collect()
        finally:
            await run.aclose()

    asyncio.run(go())
    r.assert_released()


def test_many_runs_at_once_share_the_slots() -> None:
    r = rig(FakeEngine("preset", "preset", delay=0.01), concurrency=2, queue=10)

    async def go() -> list[int]:
        started = time.monotonic()
        results = await asyncio.gather(*(r.service.collect(job("preset")) for _ in range(6)))
        assert time.monotonic() - started < 30
        return [res.audio.samples.shape[-1] for res in results]

    assert asyncio.run(go()) == [2 * CHUNK_SAMPLES] * 6
    assert r.count("preset", "200") == 6
    r.assert_released()
