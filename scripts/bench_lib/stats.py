"""Small statistics helpers: every figure is a median with its spread, never a single timing."""

from __future__ import annotations

import math
import statistics
from typing import Any


def summary(values: list[float]) -> dict[str, Any]:
    """``{"median", "min", "max", "q1", "q3", "n", "values"}`` of the samples (empty: n=0, None)."""
    v = sorted(float(x) for x in values)
    if not v:
        return {"median": None, "min": None, "max": None, "q1": None, "q3": None, "n": 0, "values": []}
    if len(v) >= 2:
        q = statistics.quantiles(v, n=4, method="inclusive")
        q1, q3 = q[0], q[2]
    else:
        q1 = q3 = v[0]
    return {
        "median": statistics.median(v),
        "min": v[0],
        "max": v[-1],
        "q1": q1,
        "q3": q3,
        "n": len(v),
        "values": v,
    }


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    v = sorted(values)
    if not v:
        return None
    k = max(1, math.ceil(p / 100.0 * len(v)))
    return v[k - 1]


def fmt(s: dict[str, Any] | None, digits: int = 2, scale: float = 1.0) -> str:
    """``median (min–max)`` for a summary; ``–`` when empty."""
    if not s or s.get("median") is None:
        return "–"
    m, lo, hi = s["median"] * scale, s["min"] * scale, s["max"] * scale
    if s["n"] == 1:
        return f"{m:.{digits}f} (n=1)"
    return f"{m:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"
