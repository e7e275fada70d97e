"""Word timings from a forced alignment: Whisper's word timestamps matched to the known words.

The text of the audio is known (it is what was synthesised), so Whisper only has to say *when*
each word is spoken. :func:`align_audio` transcribes with word timestamps and :func:`align_words`
maps what Whisper heard onto the known words:

1. both sides are normalised (:func:`api.text.wer.normalize_words`: lowercase, no punctuation)
   and aligned token by token with the house's monotonic minimum-edit alignment
   (:func:`api.text.wer.align`, Hirschberg: memory linear in the words);
2. a known word takes the span of the heard words whose tokens match its own exactly (several
   heard words: their union, e.g. ``x-ray`` heard as ``x`` ``ray``); a heard word matching
   several known words (``U.S.`` for ``U S``) is split among them by character length;
3. only exact token matches anchor words; a stretch of known words between two anchors
   (misheard, dropped, or written differently: ``1990`` / ``nineteen ninety``) is laid over
   the heard words of the same stretch by character position (:func:`_warp`), or, when nothing
   was heard there, spread by character length between the anchors; a stretch with no room
   takes its left neighbour's span and shares it;
4. times are made monotonic and clipped to ``[0, duration]``, then shifted by ``offset``.

Every known word gets exactly one timing, in input order; nothing is invented.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from api.captions.words import TextWord, TimedWord
from api.text.wer import align as align_tokens
from api.text.wer import normalize_words
from api.timing import Word
from api.transcribe.base import Transcriber, Transcript

#: A word placed by interpolation gets at least this long (seconds) before a neighbour is shared.
MIN_WORD_SECONDS = 0.06
#: Frames this far below the loudest frame count as silence when finding the speech's bounds.
SILENCE_DB = -40.0
_FRAME_SECONDS = 0.01
#: Silence at a word's edge shorter than this many 10 ms frames is kept (a stop's closure).
SNAP_MIN_FRAMES = 5


def speech_bounds(samples: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """First and last moment (seconds) of sound in a clip; ``(0, duration)`` when all quiet."""
    mono = np.asarray(samples, dtype=np.float32)
    if mono.ndim > 1:
        mono = mono.mean(axis=0)
    duration = mono.size / sample_rate if sample_rate > 0 else 0.0
    frame = max(1, int(_FRAME_SECONDS * sample_rate))
    usable = mono.size // frame * frame
    if usable == 0:
        return 0.0, duration
    rms = np.sqrt((mono[:usable].reshape(-1, frame) ** 2).mean(axis=1))
    peak = float(rms.max())
    if peak <= 0.0:
        return 0.0, duration
    loud = np.flatnonzero(rms >= peak * 10 ** (SILENCE_DB / 20))
    return float(loud[0] * frame / sample_rate), min(duration, float((loud[-1] + 1) * frame / sample_rate))


def loud_frames(samples: np.ndarray, sample_rate: int, silence_db: float = SILENCE_DB) -> np.ndarray:
    """Per 10 ms frame: True where the clip is louder than ``silence_db`` below its loudest frame."""
    mono = np.asarray(samples, dtype=np.float32)
    if mono.ndim > 1:
        mono = mono.mean(axis=0)
    frame = max(1, int(_FRAME_SECONDS * sample_rate))
    usable = mono.size // frame * frame
    if usable == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt((mono[:usable].reshape(-1, frame).astype(np.float64) ** 2).mean(axis=1))
    peak = float(rms.max())
    if peak <= 0.0:
        return np.zeros(rms.size, dtype=bool)
    loud: np.ndarray = rms >= peak * 10 ** (silence_db / 20)
    return loud


def snap_to_sound(
    words: list[TimedWord], loud: np.ndarray, *, min_gap: int = SNAP_MIN_FRAMES
) -> list[TimedWord]:
    """Move word starts forward past, and ends back before, silence inside their spans.

    Whisper's word boundaries run into the pauses beside a word (a word after a pause often
    starts where the previous one ended). Only a silent run of at least ``min_gap`` frames
    (10 ms each) at a span's edge is cut, so the closure of a stop consonant stays in its word;
    a span with no sound at all is left as it is. Times relative to the clip, in order.
    """
    out: list[TimedWord] = []
    n = loud.size
    for w in words:
        a = int(np.floor(w.start / _FRAME_SECONDS))
        b = min(n, int(np.ceil(w.end / _FRAME_SECONDS)))
        s, e = w.start, w.end
        if 0 <= a < b:
            idx = np.flatnonzero(loud[a:b])
            if idx.size:
                if idx[0] >= min_gap:
                    s = (a + int(idx[0])) * _FRAME_SECONDS
                if (b - a) - 1 - idx[-1] >= min_gap:
                    e = (a + int(idx[-1]) + 1) * _FRAME_SECONDS
        out.append(TimedWord(w.word, s, max(s, e), w.char_start, w.char_end))
    return out


def heard_words(transcript: Transcript) -> list[Word]:
    """Whisper's words in time order (a transcriber without word timestamps gives none)."""
    return [w for seg in transcript.segments for w in seg.words if w.text.strip()]


def _weight(text: str) -> int:
    return max(1, sum(len(t) for t in normalize_words(text)))


def _share(start: float, end: float, texts: Sequence[str]) -> list[tuple[float, float]]:
    """``[start, end]`` cut into consecutive pieces proportional to the texts' lengths."""
    weights = np.array([_weight(t) for t in texts], dtype=np.float64)
    edges = start + (end - start) * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    return [(float(edges[i]), float(edges[i + 1])) for i in range(len(texts))]


def _warp(heard: Sequence[Word], texts: Sequence[str], lo: float, hi: float) -> list[tuple[float, float]]:
    """Spans for ``texts`` spoken as the ``heard`` words (in time order), matched by characters.

    The heard words' characters, laid end to end, map piecewise-linearly onto their time spans
    (pauses between them are jumps); the known words' characters are laid over the same line
    in proportion, so ``1990`` heard as ``nineteen ninety`` spans both, and ``blorptik zanfrey``
    heard as ``blood tick sand free`` splits where the characters say.
    """
    spans: list[tuple[float, float, float]] = []  # start, end, first character position
    pos, prev = 0.0, lo
    for w in heard:
        s = min(max(w.start, prev, lo), hi)
        e = min(max(w.end, s), hi)
        spans.append((s, e, pos))
        pos += _weight(w.text)
        prev = e
    total = pos

    weights = np.array([_weight(t) for t in texts], dtype=np.float64)
    bounds = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()]) * total
    lengths = [_weight(w.text) for w in heard]

    firsts = [x0 for _, _, x0 in spans]

    def time_at(x: float, starting: bool) -> float:
        # the heard word holding character position x (a start looks right of a word boundary,
        # an end left of it); binary search, so a stretch costs O((words + heard) log heard)
        if abs(x - round(x)) < 1e-6:  # heard word boundaries are whole characters
            x = float(round(x))
        j = (bisect.bisect_right(firsts, x) if starting else bisect.bisect_left(firsts, x)) - 1
        if j < 0:
            return spans[0][0]
        s, e, x0 = spans[j]
        c = lengths[j]
        if x >= x0 + c and starting:
            return spans[-1][1]
        return s + min(1.0, (x - x0) / c) * (e - s)

    out = []
    for i in range(len(texts)):
        start = time_at(float(bounds[i]), True)
        end = time_at(float(bounds[i + 1]), False)
        out.append((start, max(start, end)))
    return out


def align_words(
    known: Sequence[TextWord],
    heard: Sequence[Word],
    duration: float,
    *,
    offset: float = 0.0,
    speech: tuple[float, float] | None = None,
) -> list[TimedWord]:
    """One :class:`TimedWord` per known word, in order, within ``[offset, offset + duration]``.

    ``heard``: the recogniser's words with times relative to this audio; ``speech``: where the
    sound starts and ends (bounds for words before the first / after the last aligned word).
    """
    n = len(known)
    if n == 0:
        return []
    duration = max(0.0, float(duration))
    lo, hi = speech if speech is not None else (0.0, duration)
    lo, hi = min(max(0.0, lo), duration), min(max(0.0, hi), duration)
    if hi < lo:
        lo, hi = 0.0, duration

    ref = [(tok, k) for k, w in enumerate(known) for tok in normalize_words(w.text)]
    hyp = [(tok, h) for h, w in enumerate(heard) for tok in normalize_words(w.text)]
    links: dict[int, list[int]] = {}  # heard index → known indices aligned to it
    for i, j in align_tokens([t for t, _ in ref], [t for t, _ in hyp]):
        if i is None or j is None:
            continue
        if ref[i][0] != hyp[j][0]:
            continue  # a substitution: placed with the stretch it lies in (step 3)
        k, h = ref[i][1], hyp[j][1]
        ks = links.setdefault(h, [])
        if not ks or ks[-1] != k:
            ks.append(k)

    spans: list[tuple[float, float] | None] = [None] * n
    first_heard: list[int | None] = [None] * n
    last_heard: list[int | None] = [None] * n
    for h in sorted(links):
        ks = links[h]
        w = heard[h]
        start, end = min(max(lo, w.start), hi), min(max(lo, w.end), hi)
        pieces = (
            [(start, max(start, end))]
            if len(ks) == 1
            else _share(start, max(start, end), [known[k].text for k in ks])
        )
        for k, (s, e) in zip(ks, pieces, strict=True):
            old = spans[k]
            spans[k] = (s, e) if old is None else (min(old[0], s), max(old[1], e))
            if first_heard[k] is None:
                first_heard[k] = h
            last_heard[k] = h

    # monotonic: a span never starts before the previous one ends
    prev_end = lo
    for k in range(n):
        sp = spans[k]
        if sp is None:
            continue
        s = max(sp[0], prev_end)
        e = max(sp[1], s)
        spans[k] = (s, e)
        prev_end = e

    _fill_gaps(known, heard, links, spans, first_heard, last_heard, lo, hi)

    out: list[TimedWord] = []
    prev_end = 0.0
    for kw, sp in zip(known, spans, strict=True):
        assert sp is not None
        s = min(max(sp[0], prev_end), duration)
        e = min(max(sp[1], s), duration)
        out.append(TimedWord(kw.text, s + offset, e + offset, kw.char_start, kw.char_end))
        prev_end = e
    return out


def _fill_gaps(
    known: Sequence[TextWord],
    heard: Sequence[Word],
    links: dict[int, list[int]],
    spans: list[tuple[float, float] | None],
    first_heard: list[int | None],
    last_heard: list[int | None],
    lo: float,
    hi: float,
) -> None:
    """Place every run of unaligned known words (in place); see the module docstring, step 3."""
    n = len(known)
    k = 0
    while k < n:
        if spans[k] is not None:
            k += 1
            continue
        a = k
        while k < n and spans[k] is None:
            k += 1
        b = k  # run is [a, b)
        left_sp = spans[a - 1] if a > 0 else None
        right_sp = spans[b] if b < n else None
        left_t = left_sp[1] if left_sp is not None else lo
        right_t = right_sp[0] if right_sp is not None else hi
        right_t = max(right_t, left_t)
        # unmatched heard words lying between the neighbours: the run was spoken there
        h_left = last_heard[a - 1] if a > 0 else None
        h_from = -1 if h_left is None else h_left
        h_to = first_heard[b] if b < n else None
        h_to = len(heard) if h_to is None else h_to
        between = [
            heard[h]
            for h in range(h_from + 1, h_to)
            if h not in links and heard[h].end > left_t and heard[h].start < right_t
        ]
        texts = [known[i].text for i in range(a, b)]
        if between:
            warped = _warp(between, texts, left_t, right_t)
            if warped[-1][1] - warped[0][0] >= MIN_WORD_SECONDS * (b - a):
                spans[a:b] = warped
                continue
        start, end = left_t, right_t
        if end - start >= MIN_WORD_SECONDS * (b - a) or (left_sp is None and right_sp is None):
            for i, piece in zip(
                range(a, b), _share(start, end, [known[i].text for i in range(a, b)]), strict=True
            ):
                spans[i] = piece
            continue
        # no room: share a neighbour's span (a merged or misheard word), left one preferred
        if left_sp is not None:
            group = range(a - 1, b)
            start, end = left_sp[0], right_t
        else:
            assert right_sp is not None
            group = range(a, b + 1)
            start, end = left_t, right_sp[1]
        for i, piece in zip(group, _share(start, end, [known[i].text for i in group]), strict=True):
            spans[i] = piece
        k = max(k, group[-1] + 1)


def align_audio(
    samples: np.ndarray,
    sample_rate: int,
    words: Sequence[TextWord],
    transcriber: Transcriber,
    *,
    offset: float = 0.0,
    language: str | None = "en",
) -> list[TimedWord]:
    """Time the known ``words`` of a clip by Whisper (word timestamps) and :func:`align_words`.

    ``samples``: float32 ``(n,)`` or ``(channels, n)``; ``offset``: where the clip starts in the
    whole output (seconds), added to every time. Blocks (run it off the event loop).
    """
    mono = np.asarray(samples, dtype=np.float32)
    n = mono.shape[-1]
    duration = n / sample_rate if sample_rate > 0 else 0.0
    if not words:
        return []
    if n == 0:
        return [TimedWord(w.text, offset, offset, w.char_start, w.char_end) for w in words]
    transcript = transcriber.transcribe(mono, sample_rate, language)
    timed = align_words(words, heard_words(transcript), duration, speech=speech_bounds(mono, sample_rate))
    return [w.shifted(offset) for w in snap_to_sound(timed, loud_frames(mono, sample_rate))]
