"""Cross-request batching of ZipVoice sampler calls (PyTorch engine).

Requests for one model run their chunk-level ``model.sample`` calls in worker threads. With
batching on (``BATCH_MAX_SIZE`` > 1), :class:`ZipVoicePipeline` hands each call to a
:class:`Batcher` instead: calls with the same step count, guidance scale and ``t_shift`` that
arrive within ``BATCH_WINDOW_MS`` of the first waiting one run as one padded ``sample`` call
(:func:`run_padded`), and every caller gets its own rows back.

Semantics (what a caller can rely on):

- **Padding** is the reference's batch-with-padding: tokens padded with the pad id, prompts of
  different lengths zero-padded to the longest and masked by their lengths, frames padded to the
  longest item and masked (``make_pad_mask``). The golden ``sample_zipvoice_batch2`` case pins it.
- **Seeds are per request**: each call draws its own initial noise from its own generator (or the
  global RNG without a seed) *before* it is queued, exactly the ``randn(n, T, F)`` draw it makes
  alone; the batch places it in its rows and fills the frames past the call's own length with
  zeros. An item's output therefore depends on its own inputs, its own seed and the padded length
  of its batch, never on the other items' seeds, texts or prompts. The longest item of a batch
  (no padding) equals its unbatched output; a shorter one is a different, equally valid sample,
  because the reference's decoder lets padded frames reach the valid ones (as upstream's own
  batched inference does).
- **Speed** may differ within a batch: each call's generated frame count is computed with the
  model's own duration formula (:func:`generated_frames`) and passed as ``duration="real"``.
- **Cancellation**: a caller whose ``cancel`` event is set while it waits leaves the queue before
  its batch starts, or, once the batch runs, gets :class:`SampleCancelled` at once and its rows
  are discarded; the other items are unaffected.
- **Errors** of a batch are raised in every caller of that batch; the batcher thread survives
  anything and serves the next batch.
- **Bounded**: at most ``max_queue`` calls wait (then :class:`BatchQueueFull`); at most
  ``max_size`` items per batch (one call with more items than that runs alone, never split).

When to close a batch: at ``max_size`` items, when the window of its oldest call has passed, or as
soon as every caller currently inside the pipeline (``Batcher.session``) is waiting, since no one
else can join: a lone request never waits for the window.

``workers`` threads run the batches, each one batch at a time (a batch is one engine run). With
more than one worker the waiting calls are shared out: a free worker takes its share of the
compatible calls waiting (``ceil(waiting / free workers)``, at most ``max_size``), so two calls
waiting with two free workers run side by side, not as one batch of two. On a CPU that is what
keeps the cores busy: one sampler run leaves them idle while Python dispatches each op, and a
second run fills those gaps (measured with the full-size distill, 2 clients, 2 cores: one
worker 0.84x the throughput of batching off, see ``docs/benchmarks.md``). On a GPU one worker
(one big batch) is the default. Requests waiting in the window or in a running batch keep their
synthesis slots; ``MAX_CONCURRENCY`` must be at least ``BATCH_MAX_SIZE`` for batches of that
size to form.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from api.zipvoice.sampling import SamplerOptions

if TYPE_CHECKING:
    import torch
    from torch import Tensor

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")


class SampleCancelled(Exception):
    """The request was cancelled while its sampler call waited or ran in a batch."""


class BatchQueueFull(RuntimeError):
    """Too many sampler calls are waiting for a batch."""


# ---------------------------------------------------------------------------------------------
# the request's cancellation, visible to the sampler call made in its thread
# ---------------------------------------------------------------------------------------------

_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "zipvoice_sample_cancel", default=None
)


@contextlib.contextmanager
def cancel_scope(event: threading.Event | None) -> Iterator[None]:
    """Sampler calls made inside (this thread) are dropped or discarded once ``event`` is set."""
    token = _CANCEL.set(event)
    try:
        yield
    finally:
        _CANCEL.reset(token)


def current_cancel() -> threading.Event | None:
    """The cancellation event of the enclosing :func:`cancel_scope` (``None`` outside one)."""
    return _CANCEL.get()


# ---------------------------------------------------------------------------------------------
# the generic batcher
# ---------------------------------------------------------------------------------------------


class _Item(Generic[J, R]):
    __slots__ = ("arrived", "cancel", "discarded", "done", "error", "job", "key", "result", "size")

    def __init__(self, job: J, size: int, key: Hashable, cancel: threading.Event | None) -> None:
        self.job = job
        self.size = size
        self.key = key
        self.cancel = cancel
        self.arrived = time.monotonic()
        self.done = threading.Event()
        self.result: R | None = None
        self.error: BaseException | None = None
        self.discarded = False

    @property
    def cancelled(self) -> bool:
        return self.discarded or (self.cancel is not None and self.cancel.is_set())


@dataclass
class BatchStats:
    """What the batcher has run (read by tests, the benchmark and the logs)."""

    batches: int = 0
    items: int = 0
    calls: int = 0
    cancelled: int = 0
    failed_batches: int = 0
    #: items per batch -> number of batches of that size
    sizes: Counter[int] = field(default_factory=Counter)


class Batcher(Generic[J, R]):
    """Group blocking ``submit`` calls from many threads into batches for ``run``.

    ``run(jobs) -> results`` (one result per job, in order) is called in the batcher's own thread.
    ``key(job)``: only jobs with equal keys share a batch; ``size(job)``: the items a job counts
    towards ``max_size``.
    """

    def __init__(
        self,
        run: Callable[[list[J]], Sequence[R]],
        *,
        key: Callable[[J], Hashable],
        size: Callable[[J], int] = lambda job: 1,
        window_s: float = 0.02,
        max_size: int = 8,
        max_queue: int = 64,
        workers: int = 1,
        name: str = "zipvoice-batcher",
    ) -> None:
        if max_size < 1 or max_queue < 1 or window_s < 0 or workers < 1:
            raise ValueError("max_size, max_queue and workers must be >= 1 and window_s >= 0")
        self._run = run
        self._key = key
        self._size = size
        self.window_s = window_s
        self.max_size = max_size
        self.max_queue = max_queue
        self.workers = workers
        self.name = name
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._pending: deque[_Item[J, R]] = deque()
        self._active = 0
        self._threads: list[threading.Thread] = []
        self._busy = 0  # workers running a batch
        self._running_calls = 0  # calls inside those batches
        self._closed = False

    # -- callers ---------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Calls waiting for a batch."""
        with self._cond:
            return len(self._pending)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Mark a caller as inside the pipeline: a batch closes early once every such caller waits."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def submit(self, job: J, cancel: threading.Event | None = None) -> R:
        """Queue ``job``, wait for its batch and return its result (blocking).

        Raises the batch's error, :class:`SampleCancelled` once ``cancel`` is set, or
        :class:`BatchQueueFull` when ``max_queue`` calls already wait.
        """
        if cancel is not None and cancel.is_set():
            raise SampleCancelled("the request was cancelled")
        item: _Item[J, R] = _Item(job, max(1, int(self._size(job))), self._key(job), cancel)
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            if len(self._pending) >= self.max_queue:
                raise BatchQueueFull(f"{len(self._pending)} sampler calls already wait for a batch")
            self._pending.append(item)
            self.stats.calls += 1
            self._ensure_thread()
            self._cond.notify_all()
        while not item.done.wait(0.02 if cancel is not None else None):
            if cancel is not None and cancel.is_set():
                with self._cond:
                    item.discarded = True
                    if item in self._pending:
                        self._pending.remove(item)
                        self.stats.cancelled += 1
                    self._cond.notify_all()
                item.result = None
                raise SampleCancelled("the request was cancelled")
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the thread; waiting calls get an error (engines normally live as long as the process)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=10)

    # -- the batcher thread ------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self.workers:
            thread = threading.Thread(
                target=self._loop, name=f"{self.name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _drop_cancelled(self) -> None:
        for item in [i for i in self._pending if i.cancelled]:
            self._pending.remove(item)
            self.stats.cancelled += 1
            item.error = SampleCancelled("the request was cancelled")
            item.done.set()

    def _take_batch(self) -> list[_Item[J, R]] | None:
        """Wait for the next batch (under the lock); ``None`` when closed."""
        while True:
            self._drop_cancelled()
            if self._closed:
                for item in self._pending:
                    item.error = RuntimeError(f"{self.name} is closed")
                    item.done.set()
                self._pending.clear()
                return None
            if not self._pending:
                self._cond.wait()
                continue
            first = self._pending[0]
            compatible = [i for i in self._pending if i.key == first.key]
            # this worker's share: the compatible calls waiting, spread over the free workers
            free = max(1, self.workers - self._busy)
            share = -(-sum(i.size for i in compatible) // free)
            cap = max(first.size, min(self.max_size, share))
            batch = [first]
            total = first.size
            for item in compatible[1:]:
                if total + item.size <= cap:
                    batch.append(item)
                    total += item.size
            remaining = first.arrived + self.window_s - time.monotonic()
            # no caller outside a running batch can still join: the ones left all wait here
            everyone_waits = 0 < self._active - self._running_calls <= len(self._pending)
            if total >= self.max_size or remaining <= 0 or everyone_waits:
                for item in batch:
                    self._pending.remove(item)
                self._busy += 1
                self._running_calls += len(batch)
                if self._pending:  # another free worker may take the rest now
                    self._cond.notify_all()
                return batch
            self._cond.wait(remaining)

    def _loop(self) -> None:
        while True:
            try:
                with self._cond:
                    batch = self._take_batch()
                if batch is None:
                    return
                try:
                    self._execute(batch)
                finally:
                    with self._cond:
                        self._busy -= 1
                        self._running_calls -= len(batch)
                        self._cond.notify_all()
            except BaseException:  # never dies: log and serve the next batch
                log.exception("%s: unexpected error", self.name)
                time.sleep(0.01)

    def _execute(self, batch: list[_Item[J, R]]) -> None:
        live = [item for item in batch if not item.cancelled]
        for item in batch:
            if item.cancelled:
                item.error = SampleCancelled("the request was cancelled")
                item.done.set()
        if not live:
            return
        try:
            results = list(self._run([item.job for item in live]))
            if len(results) != len(live):
                raise RuntimeError(f"the batch returned {len(results)} results for {len(live)} calls")
        except BaseException as exc:  # every caller of the batch gets the error
            with self._cond:
                self.stats.failed_batches += 1
            for item in live:
                item.error = exc
                item.done.set()
            return
        size = sum(item.size for item in live)
        with self._cond:
            self.stats.batches += 1
            self.stats.items += size
            self.stats.sizes[size] += 1
        for item, result in zip(live, results, strict=True):
            if not item.discarded:
                item.result = result
            item.done.set()


# ---------------------------------------------------------------------------------------------
# ZipVoice sampler calls as batch jobs
# ---------------------------------------------------------------------------------------------


@dataclass
class SampleJob:
    """One chunk-level ``model.sample`` call of a request: ``n`` items sharing options.

    ``x0`` is ``(n, T, F)`` with ``T`` at least the job's longest item (prompt + generated frames);
    frames past ``T`` in a longer batch are zeros.
    """

    tokens: list[list[int]]
    prompt_tokens: list[list[int]]
    prompt_features: Tensor  # (n, P, F), zero-padded past each item's length
    prompt_features_lens: Tensor  # (n,) int64
    gen_lens: Tensor  # (n,) int64: frames generated per item
    x0: Tensor  # (n, T, F) float32
    options: SamplerOptions

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def key(self) -> tuple[int, float, float]:
        """Calls that can share a batch: same steps, guidance and time schedule (speed may differ)."""
        o = self.options
        return (int(o.num_step), float(o.guidance_scale), float(o.t_shift))


def generated_frames(
    tokens: Sequence[Sequence[int]],
    prompt_tokens: Sequence[Sequence[int]],
    prompt_features_lens: Tensor,
    speed: float,
) -> Tensor:
    """Frames generated per item: the model's ``duration="predict"`` formula
    (``ceil(prompt_frames / prompt_tokens · text_tokens / speed)``), computed with the same
    ops on the same device, so ``duration="real"`` with these lengths is the same sample."""
    import torch

    device = prompt_features_lens.device
    prompt_lens = torch.tensor([len(p) for p in prompt_tokens], dtype=torch.int64, device=device)
    text_lens = torch.tensor([len(t) for t in tokens], dtype=torch.int64, device=device)
    return torch.ceil(prompt_features_lens / prompt_lens * text_lens / float(speed)).to(torch.int64)


def make_job(
    tokens: Sequence[Sequence[int]],
    prompt_tokens: Sequence[Sequence[int]],
    prompt_features: Tensor,
    prompt_features_lens: Tensor,
    options: SamplerOptions,
    *,
    generator: torch.Generator | None = None,
    x0: Tensor | None = None,
) -> SampleJob:
    """A job for ``model.sample``'s arguments; the noise is drawn here, in the caller's thread, from
    ``generator`` (else the global RNG) exactly as the unbatched call draws it."""
    import torch

    if options.duration != "predict":
        raise ValueError('batched sampling takes duration="predict" calls')
    device = prompt_features.device
    plens = prompt_features_lens.to(device=device, dtype=torch.int64)
    gen = generated_frames(tokens, prompt_tokens, plens, options.speed)
    frames = int((plens + gen).max())
    if x0 is None:
        x0 = torch.randn(len(tokens), frames, prompt_features.shape[-1], generator=generator, device=device)
    elif x0.shape[0] != len(tokens) or x0.shape[1] < frames or x0.shape[2] != prompt_features.shape[-1]:
        raise ValueError(f"x0 must be ({len(tokens)}, >= {frames}, {prompt_features.shape[-1]})")
    return SampleJob(
        tokens=[list(t) for t in tokens],
        prompt_tokens=[list(p) for p in prompt_tokens],
        prompt_features=prompt_features,
        prompt_features_lens=plens,
        gen_lens=gen,
        x0=x0,
        options=options,
    )


def run_padded(model: Any, jobs: Sequence[SampleJob]) -> list[tuple[Tensor, Tensor]]:
    """Run ``jobs`` (equal :attr:`SampleJob.key`) as one padded ``model.sample`` call; per job
    ``(pred_features (n, T', F), pred_features_lens (n,))`` as its own call would return them."""
    import torch

    if not jobs:
        return []
    first = jobs[0]
    device = first.prompt_features.device
    plens = torch.cat([j.prompt_features_lens.to(device) for j in jobs])
    gen = torch.cat([j.gen_lens.to(device) for j in jobs])
    frames = int((plens + gen).max())
    feat = first.prompt_features.shape[-1]
    batch = sum(j.size for j in jobs)
    width = max(j.prompt_features.shape[1] for j in jobs)
    prompts = first.prompt_features.new_zeros(batch, width, feat)
    x0 = torch.zeros(batch, frames, feat, dtype=torch.float32, device=device)
    row = 0
    for j in jobs:
        n = j.size
        prompts[row : row + n, : j.prompt_features.shape[1]] = j.prompt_features
        keep = min(frames, j.x0.shape[1])
        x0[row : row + n, :keep] = j.x0[:, :keep].to(device=device, dtype=torch.float32)
        row += n
    o = first.options
    options = SamplerOptions(
        speed=1.0, t_shift=o.t_shift, duration="real", num_step=o.num_step, guidance_scale=o.guidance_scale
    )
    pred, pred_lens = model.sample(
        [t for j in jobs for t in j.tokens],
        [p for j in jobs for p in j.prompt_tokens],
        prompts,
        plens,
        options,
        x0=x0,
        features_lens=gen,
    )[:2]
    out: list[tuple[Tensor, Tensor]] = []
    row = 0
    for j in jobs:
        lens = pred_lens[row : row + j.size]
        out.append((pred[row : row + j.size, : int(lens.max())], lens))
        row += j.size
    return out


def sample_batcher(
    model: Any,
    *,
    window_s: float,
    max_size: int,
    max_queue: int,
    workers: int = 1,
    name: str = "zipvoice-batcher",
) -> Batcher[SampleJob, tuple[Tensor, Tensor]]:
    """A :class:`Batcher` of ``model``'s sampler calls, ``workers`` batches at a time."""

    def run(jobs: list[SampleJob]) -> list[tuple[Tensor, Tensor]]:
        return run_padded(model, jobs)

    return Batcher(
        run,
        key=lambda job: job.key,
        size=lambda job: job.size,
        window_s=window_s,
        max_size=max_size,
        max_queue=max_queue,
        workers=workers,
        name=name,
    )
