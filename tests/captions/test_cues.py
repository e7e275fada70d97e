"""Caption cues: grouping rules, and SRT/WebVTT that parse back to the words, in order, in time."""

from __future__ import annotations

import re

import pytest

from api.captions.cues import group_cues, render, render_srt, render_vtt, srt_time, vtt_time
from api.captions.words import TimedWord, split_words

_SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
_VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def _secs(m: tuple[str, ...]) -> float:
    h, mi, s, ms = (int(x) for x in m)
    return h * 3600 + mi * 60 + s + ms / 1000


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    cues = []
    for n, block in enumerate(text.strip("\n").split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(n)
        m = re.fullmatch(_SRT_TIME + " --> " + _SRT_TIME, lines[1])
        assert m, lines[1]
        g = m.groups()
        assert len(lines) >= 3 and all(line.strip() for line in lines[2:])
        cues.append((_secs(g[:4]), _secs(g[4:]), "\n".join(lines[2:])))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    assert text.startswith("WEBVTT\n\n")
    cues = []
    for block in text[len("WEBVTT\n\n") :].strip("\n").split("\n\n"):
        lines = block.split("\n")
        m = re.fullmatch(_VTT_TIME + " --> " + _VTT_TIME, lines[1])
        assert m, lines[1]
        g = m.groups()
        body = "\n".join(lines[2:])
        assert "<" not in body and ">" not in body.replace("&gt;", "")
        body = body.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        cues.append((_secs(g[:4]), _secs(g[4:]), body))
    return cues


TEXT = (
    "Captions help everyone. They show each word as it is spoken, so readers can follow along "
    "even in a noisy room; subtitle tools, karaoke players & audiobook readers use them <daily>. "
    "A long pause follows. Then we speak again --> and finish with one last sentence!"
)


def _timed(text: str, pause_after: str = "follows.") -> list[TimedWord]:
    """Synthetic timings: 0.3 s per word with 0.05 s gaps, and a 2 s pause after one word."""
    t, out = 0.2, []
    for w in split_words(text):
        out.append(TimedWord(w.text, t, t + 0.3, w.char_start, w.char_end))
        t += 0.35 + (2.0 if w.text == pause_after else 0.0)
    return out


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_render_parses_back(fmt: str) -> None:
    words = _timed(TEXT)
    duration = words[-1].end + 0.1
    out = render(words, fmt, duration=duration)  # type: ignore[arg-type]
    cues = parse_srt(out) if fmt == "srt" else parse_vtt(out)
    assert len(cues) >= 4
    prev_end = 0.0
    for start, end, body in cues:
        assert start < end <= duration + 1e-9
        assert start >= prev_end - 1e-9  # monotonic, no overlap
        prev_end = end
        lines = body.split("\n")
        assert 1 <= len(lines) <= 2
        assert all(len(line) <= 42 for line in lines)
        assert end - start <= 6.0 + 1e-9
    shown = " ".join(body.replace("\n", " ") for _, _, body in cues).split()
    assert shown == [w.replace("-->", "->") for w in TEXT.split()]  # every word, in order


def test_breaks_at_sentences_and_pauses() -> None:
    words = _timed(TEXT)
    cues = group_cues(words, duration=words[-1].end)
    assert cues[0].text == "Captions help everyone."
    # the 2 s pause ends a cue even without punctuation
    pause = _timed("one two three four", pause_after="two")
    cues = group_cues(pause)
    assert [c.text for c in cues] == ["one two", "three four"]


def test_long_cue_split_by_duration() -> None:
    slow = [TimedWord(f"w{i}", i * 1.0, i * 1.0 + 0.9, 3 * i, 3 * i + 2) for i in range(20)]
    cues = group_cues(slow)
    assert all(c.end - c.start <= 6.0 for c in cues)
    assert [w for c in cues for w in c.words] == slow


def test_min_duration_held_but_not_past_next_or_audio() -> None:
    words = [TimedWord("Hi.", 0.0, 0.2, 0, 3), TimedWord("Yes.", 0.5, 0.6, 4, 8)]
    cues = group_cues(words, duration=1.0)
    assert cues[0].end == pytest.approx(0.5)  # held up to the next cue
    assert cues[1].end == pytest.approx(1.0)  # held up to the end of the audio


def test_timestamps_and_escaping() -> None:
    assert srt_time(3723.4567) == "01:02:03,457"
    assert vtt_time(0.0004) == "00:00:00.000"
    words = [TimedWord("<b>&", 0.0, 1.0, 0, 4)]
    assert "&lt;b&gt;&amp;" in render_vtt(group_cues(words))
    assert "<b>&" in render_srt(group_cues(words))
    with pytest.raises(ValueError):
        render(words, "ass")  # type: ignore[arg-type]
