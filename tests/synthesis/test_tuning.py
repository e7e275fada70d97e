"""Tuning: measured RTFs, and ``recommend`` among the priority profiles the engines declare."""

from __future__ import annotations

import pytest

from api.engines.base import PriorityProfile
from api.engines.registry import EngineRegistry, EngineSpec
from api.errors import ServiceUnavailableError
from api.settings import Settings
from api.synthesis.tuning import RTFTracker, profiles, recommend

from .fakes import FakeEngine


def test_tracker_measured_scaled_unmeasured() -> None:
    t = RTFTracker(alpha=0.5)
    assert t.estimate("zipvoice", 16) == (None, "unmeasured")
    t.record("zipvoice", 8, seconds=4.0, audio_seconds=2.0)  # rtf 2
    assert t.estimate("zipvoice", 8) == (2.0, "measured")
    rtf, source = t.estimate("zipvoice", 16)
    assert source == "scaled" and rtf == pytest.approx(4.0)
    t.record("zipvoice", 8, seconds=8.0, audio_seconds=2.0)  # rtf 4 → ewma 3
    assert t.estimate("zipvoice", 8)[0] == pytest.approx(3.0)
    t.record("zipvoice", 8, seconds=1.0, audio_seconds=0.0)  # ignored
    assert t.estimate("zipvoice", 8)[0] == pytest.approx(3.0)


def test_tracker_is_bounded() -> None:
    t = RTFTracker(max_keys=2)
    for steps in range(5):
        t.record("b", steps + 1, 1.0, 1.0)
    assert len(t.snapshot()) == 2


# -- recommend: among the profiles the engines declare ---------------------------------------


def _registry(*engines: FakeEngine) -> EngineRegistry:
    settings = Settings(allow_downloads=False)
    return EngineRegistry(settings, {e.name: EngineSpec(e.name, lambda _s, e=e: e, e.name) for e in engines})  # type: ignore[misc]


def test_recommend_takes_the_best_ranked_available_profile() -> None:
    a = FakeEngine("a", priority_profiles={"speed": PriorityProfile(4, 3.0, rank=1)})
    b = FakeEngine("b", priority_profiles={"speed": PriorityProfile(6, 2.0, rank=0)})
    preset = FakeEngine("p", "preset")
    registry, tracker = _registry(a, b, preset), RTFTracker()
    rec = recommend(registry, tracker, "speed", "x" * 140)
    assert (rec.model, rec.num_steps, rec.guidance_scale) == ("b", 6, 2.0)
    assert rec.rtf_source == "unmeasured" and rec.estimated_audio_seconds == pytest.approx(10.0)
    tracker.record("b", 6, seconds=5.0, audio_seconds=10.0)
    assert recommend(registry, tracker, "speed", "x" * 140).estimated_seconds == pytest.approx(5.0)
    b.available = False
    assert recommend(registry, tracker, "speed", "x").model == "a"
    with pytest.raises(ServiceUnavailableError):
        recommend(registry, tracker, "quality", "x")  # nobody declares quality


def test_equal_ranks_follow_the_registry_order() -> None:
    a = FakeEngine("a", priority_profiles={"balanced": PriorityProfile(4, 1.0)})
    b = FakeEngine("b", priority_profiles={"balanced": PriorityProfile(8, 1.0)})
    assert [name for name, _ in profiles(_registry(b, a), "balanced")] == ["b", "a"]


def test_zipvoice_declares_the_historic_table() -> None:
    pytest.importorskip("api.engines.zipvoice")
    registry = EngineRegistry(Settings(allow_downloads=False))
    got = {
        p: [(name, prof.num_steps, prof.guidance_scale) for name, prof in profiles(registry, p)]
        for p in ("speed", "balanced", "quality")
    }
    assert got == {
        "speed": [("zipvoice_distill", 4, 3.0), ("zipvoice", 8, 1.0)],
        "balanced": [("zipvoice_distill", 8, 3.0), ("zipvoice", 12, 1.0)],
        "quality": [("zipvoice", 16, 1.0), ("zipvoice_distill", 8, 3.0)],
    }
