"""The limits seam: what the middleware and the speech pipeline ask of a limits backend.

Keys are voice namespaces (:func:`api.auth.owner_for_key`: a hash of the API key, never the key).
Semantics every backend implements identically:

* **Rate** (``RATE_LIMIT_RPM`` = N): a token bucket per key holding at most N tokens and refilled at
  N per minute; each request takes one; an empty bucket → 429 with ``Retry-After`` = the seconds
  until the next token (rounded up).
* **Quota** (``QUOTA_AUDIO_SECONDS_PER_DAY`` = Q): audio seconds produced per key per UTC day; a
  speech request from a key that has produced ≥ Q today → 429 with ``Retry-After`` = seconds to
  the next UTC midnight. The request that crosses Q still completes (its length is unknown until
  it ends).
* **Usage**: requests, input characters and audio seconds per key and model, kept until reset.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

from api.errors import RateLimitError


@dataclass
class KeyUsage:
    """Usage of one key: totals and per model."""

    requests: int = 0
    input_characters: int = 0
    audio_seconds: float = 0.0
    by_model: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self, key: str) -> dict[str, object]:
        return {
            "key": key,
            "requests": self.requests,
            "input_characters": self.input_characters,
            "audio_seconds": round(self.audio_seconds, 3),
            "by_model": {
                m: {
                    "requests": int(v.get("requests", 0)),
                    "input_characters": int(v.get("input_characters", 0)),
                    "audio_seconds": round(float(v.get("audio_seconds", 0.0)), 3),
                }
                for m, v in sorted(self.by_model.items())
            },
        }


class UsageLimits(Protocol):
    """Admission and accounting shared by every route (implementations are thread- and task-safe)."""

    rate_per_minute: int
    quota_seconds_per_day: float

    async def admit(self, key: str) -> None:
        """Take one request token for ``key``; raise 429 (:class:`RateLimitError`) when none is left."""
        ...

    async def check_quota(self, key: str) -> None:
        """Raise 429 when ``key`` has used up today's audio quota."""
        ...

    async def record(self, key: str, model: str, input_characters: int, audio_seconds: float) -> None:
        """Count one finished speech request."""
        ...

    async def usage(self, key: str | None = None) -> dict[str, KeyUsage]:
        """Usage per key (``None``: every key)."""
        ...

    async def ping(self) -> None:
        """Raise :class:`~api.errors.ServiceUnavailableError` when the backing store is unreachable."""
        ...

    async def close(self) -> None: ...


def utc_day(now: float | None = None) -> str:
    return time.strftime("%Y%m%d", time.gmtime(time.time() if now is None else now))


def seconds_to_utc_midnight(now: float | None = None) -> int:
    t = time.time() if now is None else now
    return max(1, math.ceil(86400 - (t % 86400)))


def rate_limited(retry_after: float) -> RateLimitError:
    seconds = max(1, math.ceil(retry_after))
    return RateLimitError(
        f"Rate limit reached for this API key (RATE_LIMIT_RPM). Retry in {seconds} s.",
        retry_after=seconds,
        code="rate_limit_exceeded",
    )


def quota_exceeded(limit: float, now: float | None = None) -> RateLimitError:
    seconds = seconds_to_utc_midnight(now)
    return RateLimitError(
        f"Daily audio quota of {limit:g} seconds reached for this API key; it resets at 00:00 UTC.",
        retry_after=seconds,
        code="quota_exceeded",
    )
