"""Cross-request batching of sampler calls (``api.zipvoice.batching``).

The generic :class:`Batcher` on a fake runner (window, early close, size split, keys, cancellation,
errors, bounds), then the ZipVoice jobs on the tiny reference checkpoints: the golden batch case
through the batcher, per-request seeds, speeds, and the engine with batching on against batching
off. Tolerances follow the fixture README (predicted features atol 1e-4).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from api.engines.base import ReferenceVoice, SynthesisOptions
from api.zipvoice.batching import (
    Batcher,
    BatchQueueFull,
    SampleCancelled,
    SampleJob,
    generated_frames,
    make_job,
    sample_batcher,
)
from api.zipvoice.model.checkpoint import load_model
from api.zipvoice.model.zipvoice import ZipVoice
from api.zipvoice.sampling import SamplerOptions
from tests.zipvoice import golden

ATOL = 1e-4
BATCH_CASES = golden.sample_case_names_where(lambda spec, g: g["tokens_lens"].shape[0] > 1)


# -- the generic batcher ------------------------------------------------------------------------


class Recorder:
    """A runner that records its batches; ``gate`` (when given) holds the first batch."""

    def __init__(self, gate: threading.Event | None = None, fail: Callable[[list[Any]], bool] | None = None):
        self.batches: list[list[Any]] = []
        self.gate = gate
        self.fail = fail
        self.started = threading.Event()

    def __call__(self, jobs: list[Any]) -> list[Any]:
        self.batches.append(list(jobs))
        self.started.set()
        if self.gate is not None and len(self.batches) == 1:
            assert self.gate.wait(10)
        if self.fail is not None and self.fail(jobs):
            raise ValueError(f"batch {jobs} failed")
        return [("out", job) for job in jobs]


def make(runner: Recorder, **kw: Any) -> Batcher[Any, Any]:
    kw.setdefault("key", lambda job: job[0])
    kw.setdefault("window_s", 0.05)
    kw.setdefault("max_size", 4)
    return Batcher(runner, **kw)


def in_threads(
    pool: ThreadPoolExecutor, b: Batcher[Any, Any], jobs: list[Any], **kw: Any
) -> list[Future[Any]]:
    return [pool.submit(b.submit, job, **kw) for job in jobs]


def test_window_expires_with_one_request() -> None:
    runner = Recorder()
    b = make(runner, window_s=0.2)
    try:
        started = time.monotonic()
        assert b.submit(("k", 1)) == ("out", ("k", 1))
        assert time.monotonic() - started >= 0.19  # nobody else came: the window ran out
        assert runner.batches == [[("k", 1)]] and b.stats.sizes == {1: 1} and b.pending == 0
    finally:
        b.close()


def test_lone_caller_in_a_session_does_not_wait_for_the_window() -> None:
    b = make(Recorder(), window_s=5.0)
    try:
        started = time.monotonic()
        with b.session():
            b.submit(("k", 1))
        assert time.monotonic() - started < 2.0  # every caller inside waits: closed at once
    finally:
        b.close()


def test_max_size_splits_and_keys_separate() -> None:
    gate = threading.Event()
    runner = Recorder(gate)
    b = make(runner, window_s=0.1, max_size=2)
    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(b.submit, ("a", 0))]
            assert runner.started.wait(5)  # the first batch runs (held by the gate)
            for n, job in enumerate([("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5)], start=1):
                futures.append(pool.submit(b.submit, job))
                deadline = time.monotonic() + 5
                while b.pending < n and time.monotonic() < deadline:  # arrival order = this order
                    time.sleep(0.005)
            gate.set()
            results = [f.result(10) for f in futures]
        assert [r[1][1] for r in results] == [0, 1, 2, 3, 4, 5]  # each caller its own result
        # oldest first; only equal keys share a batch; at most max_size; the last one alone
        assert runner.batches[1:] == [[("a", 1), ("a", 3)], [("b", 2), ("b", 5)], [("a", 4)]]
        assert b.stats.items == 6 and b.stats.sizes == {1: 2, 2: 2} and b.pending == 0
    finally:
        b.close()


def test_a_job_counts_its_items_and_a_big_one_runs_alone() -> None:
    runner = Recorder()
    b = make(runner, size=lambda job: job[1], max_size=3, window_s=0.3)
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = in_threads(pool, b, [("k", 5), ("k", 1), ("k", 2)])
            for f in futures:
                f.result(10)
        sizes = sorted(sum(job[1] for job in batch) for batch in runner.batches)
        assert 5 in sizes and max(s for s in sizes if s != 5) <= 3
    finally:
        b.close()


def _in_session(b: Batcher[Any, Any], barrier: threading.Barrier, job: Any) -> Any:
    with b.session():
        barrier.wait(10)  # every caller is inside before anyone submits
        return b.submit(job)


def _two_workers_in_step() -> Batcher[Any, Any]:
    """Two workers whose batches each wait until the other batch has started: a batch that ran
    alone (the batches one after the other) breaks the barrier and fails its callers."""
    both_running = threading.Barrier(2)

    def run(jobs: list[Any]) -> list[Any]:
        both_running.wait(10)
        return [("out", job) for job in jobs]

    return Batcher(run, key=lambda job: job[0], window_s=5.0, max_size=8, workers=2)


def _all_in_session(b: Batcher[Any, Any], calls: int) -> list[Any]:
    barrier = threading.Barrier(calls)
    with ThreadPoolExecutor(calls) as pool:
        futures = [pool.submit(_in_session, b, barrier, ("k", n)) for n in range(calls)]
        return [f.result(20) for f in futures]


def test_two_workers_share_out_the_waiting_calls() -> None:
    b = _two_workers_in_step()
    try:
        assert [r[1][1] for r in _all_in_session(b, 8)] == list(range(8))
        # all 8 waited (no window wait): two free workers take half each, not one batch of 8
        assert b.stats.sizes == {4: 2}, b.stats.sizes
    finally:
        b.close()


def test_two_calls_with_two_workers_run_side_by_side() -> None:
    b = _two_workers_in_step()
    try:
        assert _all_in_session(b, 2) == [("out", ("k", 0)), ("out", ("k", 1))]
        assert b.stats.sizes == {1: 2}
    finally:
        b.close()


def test_one_worker_still_makes_one_batch() -> None:
    b = make(Recorder(), window_s=5.0, max_size=8)
    try:
        _all_in_session(b, 4)
        assert b.stats.sizes == {4: 1}
    finally:
        b.close()


def test_workers_are_validated_and_resolved() -> None:
    from api.engines.zipvoice import batch_workers

    with pytest.raises(ValueError, match="workers"):
        Batcher(Recorder(), key=lambda job: job, workers=0)
    assert batch_workers(0, "cpu") == 2 and batch_workers(0, "cuda:0") == 1
    assert batch_workers(3, "cpu") == 3 and batch_workers(1, "cuda") == 1


def test_cancelled_waiting_call_is_dropped_before_its_batch() -> None:
    gate = threading.Event()
    runner = Recorder(gate)
    b = make(runner, window_s=0.05)
    try:
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(b.submit, ("k", 0))
            assert runner.started.wait(5)
            cancel = threading.Event()
            doomed = pool.submit(b.submit, ("k", 1), cancel)
            other = pool.submit(b.submit, ("k", 2))
            while b.pending < 2:
                time.sleep(0.01)
            cancel.set()
            with pytest.raises(SampleCancelled):
                doomed.result(5)  # returns at once, the first batch still running
            assert not gate.is_set()
            gate.set()
            assert first.result(5) == ("out", ("k", 0)) and other.result(5) == ("out", ("k", 2))
        assert all(("k", 1) not in batch for batch in runner.batches)
        assert b.pending == 0 and b.stats.cancelled == 1
    finally:
        b.close()


def test_cancelled_running_call_returns_at_once_and_others_get_their_results() -> None:
    gate = threading.Event()
    runner = Recorder(gate)
    b = make(runner, window_s=0.5, max_size=2)
    try:
        cancel = threading.Event()
        with ThreadPoolExecutor(4) as pool:
            doomed = pool.submit(b.submit, ("k", 0), cancel)
            other = pool.submit(b.submit, ("k", 1))
            assert runner.started.wait(5)
            assert len(runner.batches[0]) == 2
            cancel.set()
            with pytest.raises(SampleCancelled):
                doomed.result(5)
            gate.set()
            assert other.result(5) == ("out", ("k", 1))
        assert b.pending == 0
    finally:
        b.close()


def test_already_cancelled_call_never_queues() -> None:
    runner = Recorder()
    b = make(runner)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(SampleCancelled):
        b.submit(("k", 0), cancel)
    assert runner.batches == [] and b.pending == 0
    b.close()


def test_errors_reach_every_caller_and_the_thread_survives() -> None:
    runner = Recorder(fail=lambda jobs: any(job[1] < 0 for job in jobs))
    b = make(runner, window_s=0.3, max_size=2)
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = in_threads(pool, b, [("k", -1), ("k", 1)])
            for f in futures:
                with pytest.raises(ValueError, match="failed"):
                    f.result(10)
        assert b.stats.failed_batches == 1
        assert b.submit(("k", 2)) == ("out", ("k", 2))  # the next batch runs
    finally:
        b.close()


def test_wrong_result_count_is_an_error_not_a_hang() -> None:
    b: Batcher[Any, Any] = Batcher(lambda jobs: [], key=lambda job: 0, window_s=0.0)
    try:
        with pytest.raises(RuntimeError, match="results"):
            b.submit(1)
        with pytest.raises(RuntimeError, match="results"):
            b.submit(2)
    finally:
        b.close()


def test_queue_is_bounded() -> None:
    gate = threading.Event()
    runner = Recorder(gate)
    b = make(runner, max_queue=1, window_s=0.05)
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(b.submit, ("k", 0))
            assert runner.started.wait(5)
            waiting = pool.submit(b.submit, ("k", 1))
            while b.pending < 1:
                time.sleep(0.01)
            with pytest.raises(BatchQueueFull):
                b.submit(("k", 2))
            gate.set()
            first.result(10)
            waiting.result(10)
    finally:
        b.close()


# -- ZipVoice sampler jobs on the tiny checkpoints ----------------------------------------------


@pytest.fixture(scope="module")
def models(reference_dir: Path) -> dict[str, ZipVoice]:
    return {name: load_model(reference_dir / "models" / name) for name in golden.model_names(reference_dir)}


def _options(g: dict[str, np.ndarray], **kw: Any) -> SamplerOptions:
    fields: dict[str, Any] = {
        "speed": float(g["speed"]),
        "t_shift": float(g["t_shift"]),
        "num_step": int(g["num_step"]),
        "guidance_scale": float(g["guidance_scale"]),
    }
    return SamplerOptions(**(fields | kw))


def _tokens(g: dict[str, np.ndarray]) -> list[list[int]]:
    return [row[:n].tolist() for row, n in zip(g["tokens"], g["tokens_lens"], strict=True)]


def _job(
    g: dict[str, np.ndarray],
    tokens: list[int],
    *,
    seed: int | None = None,
    x0: torch.Tensor | None = None,
    **opts: Any,
) -> SampleJob:
    prompt = torch.from_numpy(g["prompt_features"])[:1]
    return make_job(
        [tokens],
        [g["prompt_tokens"].tolist()],
        prompt,
        torch.tensor([prompt.shape[1]]),
        _options(g, **opts),
        generator=None if seed is None else torch.Generator().manual_seed(seed),
        x0=x0,
    )


def _solo(
    model: ZipVoice, g: dict[str, np.ndarray], tokens: list[int], seed: int, **opts: Any
) -> torch.Tensor:
    prompt = torch.from_numpy(g["prompt_features"])[:1]
    pred, lens = model.sample(
        [tokens],
        [g["prompt_tokens"].tolist()],
        prompt,
        torch.tensor([prompt.shape[1]]),
        _options(g, **opts),
        generator=torch.Generator().manual_seed(seed),
    )
    return pred[0, : int(lens[0])]


def _together(model: ZipVoice, jobs: list[SampleJob]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], Any]:
    """``jobs`` submitted from as many threads to one batcher that waits for all of them."""
    b = sample_batcher(model, window_s=10.0, max_size=sum(j.size for j in jobs), max_queue=8)
    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            futures = [pool.submit(b.submit, job) for job in jobs]
            results = [f.result(120) for f in futures]
        return results, b.stats
    finally:
        b.close()


@pytest.mark.parametrize("case", BATCH_CASES)
def test_golden_batch_through_the_batcher(
    case: str, reference_dir: Path, models: dict[str, ZipVoice]
) -> None:
    """Each item of the golden batch as its own request (its own row of the golden x0): one padded
    batch reproduces the reference's batched prediction."""
    golden.require(case)
    g = golden.load_sample(reference_dir, case)
    model = models[golden.sample_case(reference_dir, case)["model"]]
    x0 = torch.from_numpy(g["x0"])
    jobs = [_job(g, toks, x0=x0[i : i + 1]) for i, toks in enumerate(_tokens(g))]
    results, stats = _together(model, jobs)
    assert stats.sizes == {len(jobs): 1}  # one batch
    for i, (pred, lens) in enumerate(results):
        n = int(g["pred_features_lens"][i])
        assert lens.tolist() == [n]
        np.testing.assert_allclose(pred[0, :n].numpy(), g["pred_features"][i, :n], rtol=0, atol=ATOL)


@pytest.mark.parametrize("case", BATCH_CASES)
def test_seeds_are_per_request(case: str, reference_dir: Path, models: dict[str, ZipVoice]) -> None:
    golden.require(case)
    g = golden.load_sample(reference_dir, case)
    model = models[golden.sample_case(reference_dir, case)["model"]]
    toks = sorted(_tokens(g), key=len)
    short, long = toks[0], toks[-1]
    assert len(short) < len(long)

    # the noise an item draws is its own seed's draw, whoever else is queued
    assert torch.equal(_job(g, long, seed=7).x0, _job(g, long, seed=7).x0)

    # the longest item of a batch (no padding) equals its output alone, whatever shares the batch
    alone = _solo(model, g, long, seed=7)
    results, stats = _together(model, [_job(g, long, seed=7), _job(g, short, seed=99)])
    assert stats.sizes == {2: 1}
    pred, lens = results[0]
    assert int(lens[0]) == alone.shape[0]
    np.testing.assert_allclose(pred[0, : alone.shape[0]].numpy(), alone.numpy(), rtol=0, atol=ATOL)

    # a padded item depends on its own seed and the batch length, never on the partner's seed or text
    other = list(reversed(long))
    a, _ = _together(model, [_job(g, short, seed=3), _job(g, long, seed=11)])
    b, _ = _together(model, [_job(g, short, seed=3), _job(g, other, seed=12)])
    n = int(a[0][1][0])
    np.testing.assert_allclose(a[0][0][0, :n].numpy(), b[0][0][0, :n].numpy(), rtol=0, atol=ATOL)
    c, _ = _together(model, [_job(g, short, seed=4), _job(g, long, seed=11)])
    assert not np.allclose(a[0][0][0, :n].numpy(), c[0][0][0, :n].numpy(), atol=ATOL)


@pytest.mark.parametrize("case", BATCH_CASES)
def test_a_lone_job_and_other_speeds_match_the_model(
    case: str, reference_dir: Path, models: dict[str, ZipVoice]
) -> None:
    """Through the batcher (``duration="real"`` from :func:`generated_frames`) a call is the model's
    own ``predict`` call; speeds may differ within a batch."""
    golden.require(case)
    g = golden.load_sample(reference_dir, case)
    model = models[golden.sample_case(reference_dir, case)["model"]]
    long = max(_tokens(g), key=len)
    for speed in (1.0, 1.37):
        alone = _solo(model, g, long, seed=5, speed=speed)
        results, _ = _together(model, [_job(g, long, seed=5, speed=speed)])
        pred, lens = results[0]
        assert int(lens[0]) == alone.shape[0]
        np.testing.assert_allclose(pred[0].numpy(), alone.numpy(), rtol=0, atol=1e-5)
    fast = _solo(model, g, long, seed=5, speed=1.37)
    results, _ = _together(model, [_job(g, long, seed=5, speed=0.8), _job(g, long, seed=5, speed=1.37)])
    frames = generated_frames(
        [long], [g["prompt_tokens"].tolist()], torch.tensor([g["prompt_features"].shape[1]]), 0.8
    )
    assert int(results[0][1][0]) == int(frames[0]) > fast.shape[0]
    assert int(results[1][1][0]) == fast.shape[0]


# -- the engine: batching on vs off -------------------------------------------------------------

PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."


def _engine(reference_dir: Path, **kw: Any) -> Any:
    from api.engines.zipvoice import ZipVoiceEngine
    from api.settings import Settings

    settings = Settings(
        engine="torch",
        zipvoice_model_dir=reference_dir / "models",
        vocos_model_dir=reference_dir / "vocos-mel-24khz-tiny",
        allow_downloads=False,
        **kw,
    )
    e = ZipVoiceEngine(settings, "zipvoice_distill")
    e.load()
    return e


@pytest.fixture(scope="module")
def voice(reference_dir: Path) -> ReferenceVoice:
    from api.audio.decode import decode_audio
    from api.voices.sources import audio_digest

    samples, rate = decode_audio((reference_dir / "audio" / "prompt.wav").read_bytes(), max_seconds=60)
    return ReferenceVoice(
        samples, rate, PROMPT_TEXT, audio_digest(samples, rate), "file", transcript_source="given"
    )


def test_engine_cancelled_request_leaves_its_batch(reference_dir: Path, voice: ReferenceVoice) -> None:
    engine = _engine(reference_dir, batch_max_size=4, batch_window_ms=1000, max_concurrency=4)
    batcher = engine._pipeline.batcher
    assert batcher is not None
    cancel = threading.Event()
    opts = SynthesisOptions(seed=1, num_steps=2, extra={"cancel": cancel})
    with ThreadPoolExecutor(2) as pool:
        # a second caller inside the pipeline keeps the window open (it never submits)
        hold = threading.Event()

        def inside() -> None:
            with batcher.session():
                hold.wait(10)

        pool.submit(inside)
        fut = pool.submit(lambda: list(engine.synthesize(["Hello there."], voice, opts)))
        deadline = time.monotonic() + 30
        while batcher.pending < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        cancel.set()
        assert fut.result(10) == []  # the generator ends quietly, no audio
        hold.set()
    assert batcher.pending == 0 and batcher.stats.batches == 0 and batcher.stats.cancelled == 1


def test_batched_requests_equal_unbatched(reference_dir: Path, voice: ReferenceVoice) -> None:
    """Concurrent requests through the service share one batch (batch counter) and, at equal length
    (no padding), each equals its unbatched output."""
    import asyncio
    import base64
    import io
    import wave

    from api.synthesis.limiter import ReferenceLimiter
    from api.synthesis.request import SpeechJob
    from tests.synthesis.fakes import rig

    on = _engine(reference_dir, batch_max_size=2, batch_window_ms=1000, max_concurrency=4, batch_workers=1)
    on._pipeline.batcher.window_s = 30.0  # the batch closes when both are in (max size), however slow
    off = _engine(reference_dir)
    assert off._pipeline.batcher is None
    text = "Batching keeps every request its own seed."

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        pcm = (np.clip(voice.samples[0], -1, 1) * 32767).astype("<i2")
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(voice.sample_rate)
        w.writeframes(pcm.tobytes())
    clip = "base64+" + base64.b64encode(buf.getvalue()).decode()

    def job(seed: int) -> SpeechJob:
        return SpeechJob(
            model="zipvoice_distill",
            text=text,
            voice=clip,
            prompt_text=PROMPT_TEXT,
            response_format="pcm",
            seed=seed,
            num_steps=2,
        )

    def run(engine: Any, seeds: list[int]) -> list[np.ndarray]:
        r = rig(engine, concurrency=4, queue=4)
        r.service.reference_limiter = ReferenceLimiter(4, 4)
        batcher = engine._pipeline.batcher
        hold = threading.Event()

        def inside() -> None:  # another request inside the engine: no early close for the first one
            with batcher.session():
                hold.wait(30)

        async def go() -> list[Any]:
            return await asyncio.gather(*(r.service.collect(job(s)) for s in seeds))

        with ThreadPoolExecutor(1) as pool:
            if batcher is not None:
                pool.submit(inside)
            try:
                return [res.audio.samples for res in asyncio.run(go())]
            finally:
                hold.set()

    batched = run(on, [1, 2])
    stats = on._pipeline.batcher.stats
    assert stats.sizes == {2: 1} and stats.batches == 1  # the two requests ran as one batch
    alone = [run(off, [s])[0] for s in (1, 2)]
    for got, want in zip(batched, alone, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    assert not np.allclose(batched[0], batched[1], atol=ATOL)  # the seeds stayed apart
