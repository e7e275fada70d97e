"""Smart tuning: ``priority`` (speed | balanced | quality) → model and sampler settings, with time
estimates from real-time factors measured on this server while it runs (no constants).

The choices are the engines' own: each declares the profiles it offers
(:attr:`api.engines.base.SpeechEngine.priority_profiles`, with a rank); no model names here."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from api.engines.base import Priority, PriorityProfile
from api.engines.registry import EngineRegistry
from api.errors import ServiceUnavailableError

__all__ = ["CHARS_PER_SECOND", "Priority", "RTFTracker", "Recommendation", "profiles", "recommend"]

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


def profiles(registry: EngineRegistry, priority: Priority) -> list[tuple[str, PriorityProfile]]:
    """Every registered engine's profile for ``priority``, best first (by rank, then registry order)."""
    found = []
    for order, backend in enumerate(registry.names()):
        profile = registry.get(backend).priority_profiles.get(priority)
        if profile is not None:
            found.append((profile.rank, order, backend, profile))
    return [(backend, profile) for _, _, backend, profile in sorted(found, key=lambda f: f[:2])]


def recommend(
    registry: EngineRegistry, tracker: RTFTracker, priority: Priority, text: str, speed: float = 1.0
) -> Recommendation:
    """The best available engine profile for ``priority``; 503 when no engine offering one can run."""
    audio_seconds = max(0.5, len(text) / CHARS_PER_SECOND / max(speed, 0.25))
    for backend, profile in profiles(registry, priority):
        if not registry.availability(backend).ok:
            continue
        steps, guidance = profile.num_steps, profile.guidance_scale
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
