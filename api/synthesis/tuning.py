"""Smart tuning: ``priority`` (speed | balanced | quality) → model and sampler settings, with time
estimates from real-time factors measured on this server while it runs (no constants)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from api.engines.registry import EngineRegistry
from api.errors import ServiceUnavailableError

Priority = Literal["speed", "balanced", "quality"]

# (backend, num_steps, guidance_scale) preferences per priority, best first.
_PLANS: dict[str, list[tuple[str, int, float]]] = {
    "speed": [("zipvoice_distill", 4, 3.0), ("zipvoice", 8, 1.0)],
    "balanced": [("zipvoice_distill", 8, 3.0), ("zipvoice", 12, 1.0)],
    "quality": [("zipvoice", 16, 1.0), ("zipvoice_distill", 8, 3.0)],
}
#: characters of English text per second of speech at speed 1 (used to guess the output length)
CHARS_PER_SECOND = 14.0


@dataclass(frozen=True)
class Recommendation:
    model: str
    num_steps: int
    guidance_scale: float
    priority: Priority
    estimated_audio_seconds: float
    estimated_seconds: float | None
    rtf: float | None
    rtf_source: Literal["measured", "scaled", "unmeasured"]


class RTFTracker:
    """Exponentially weighted RTF per (backend, steps), fed by every synthesis the server runs."""

    def __init__(self, alpha: float = 0.3, max_keys: int = 256) -> None:
        self.alpha = alpha
        self.max_keys = max_keys
        self._rtf: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def record(self, backend: str, steps: int, seconds: float, audio_seconds: float) -> None:
        if audio_seconds <= 0 or seconds <= 0:
            return
        rtf = seconds / audio_seconds
        with self._lock:
            key = (backend, steps)
            old = self._rtf.get(key)
            if old is None and len(self._rtf) >= self.max_keys:
                return
            self._rtf[key] = rtf if old is None else (1 - self.alpha) * old + self.alpha * rtf

    def estimate(
        self, backend: str, steps: int
    ) -> tuple[float | None, Literal["measured", "scaled", "unmeasured"]]:
        """RTF for (backend, steps): measured, or scaled linearly in steps from another measurement."""
        with self._lock:
            exact = self._rtf.get((backend, steps))
            if exact is not None:
                return exact, "measured"
            others = [(s, r) for (b, s), r in self._rtf.items() if b == backend and s > 0]
        if not others:
            return None, "unmeasured"
        s, r = min(others, key=lambda p: abs(p[0] - steps))
        return r * steps / s, "scaled"

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {f"{b}@{s}": round(r, 4) for (b, s), r in self._rtf.items()}


def recommend(
    registry: EngineRegistry, tracker: RTFTracker, priority: Priority, text: str, speed: float = 1.0
) -> Recommendation:
    """The first available plan for ``priority``; 503 when no cloning backend can run."""
    audio_seconds = max(0.5, len(text) / CHARS_PER_SECOND / max(speed, 0.25))
    for backend, steps, guidance in _PLANS[priority]:
        if backend not in registry.names() or not registry.availability(backend).ok:
            continue
        rtf, source = tracker.estimate(backend, steps)
        return Recommendation(
            model=backend,
            num_steps=steps,
            guidance_scale=guidance,
            priority=priority,
            estimated_audio_seconds=round(audio_seconds, 2),
            estimated_seconds=None if rtf is None else round(audio_seconds * rtf, 2),
            rtf=None if rtf is None else round(rtf, 4),
            rtf_source=source,
        )
    raise ServiceUnavailableError(
        "No ZipVoice backend is available on this server to tune for.", param="priority"
    )
