import pytest

from api.synthesis.tuning import RTFTracker


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
