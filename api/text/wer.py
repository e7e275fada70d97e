"""Word and character error rates with a simple English normaliser.

The normaliser lowercases, folds curly quotes, drops apostrophes inside words
(``don't`` → ``dont``), turns every other punctuation or symbol into a space and
collapses whitespace. Numbers are left as they are (``10`` and ``ten`` differ).

Bounded whatever the input: only the first :data:`MAX_COMPARE_TOKENS` tokens of each side are
compared (the first :data:`MAX_COMPARE_CHARS` characters are normalised), alignments use
Hirschberg's linear-memory algorithm and distances two DP rows, each row vectorised with NumPy.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_APOSTROPHES = {"'", "\u2019", "\u2018", "\u02bc", "`"}


class _FoldTable(dict[int, str]):
    """``str.translate`` table filled on first sight of each character (bounded by Unicode)."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        out = "" if ch in _APOSTROPHES else (" " if unicodedata.category(ch)[0] in "PSZC" else ch)
        self[code] = out
        return out


_FOLD = _FoldTable()


def normalize_text(text: str) -> str:
    """Lowercase, strip punctuation (apostrophes vanish, the rest become spaces), collapse spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(text.translate(_FOLD).split())


def normalize_words(text: str) -> list[str]:
    """The normalised words of ``text``."""
    return normalize_text(text).split()


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations turning the reference into the hypothesis."""

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors per reference token; 0 for two empty sequences, 1 for an empty reference."""
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.reference_length


#: At most this many tokens (words for WER, characters for CER) of each side are compared; longer
#: inputs are cut to their opening, so one comparison costs at most ``MAX_COMPARE_TOKENS²`` cell
#: updates (vectorised, well under a second) and memory linear in the tokens, whatever it is given.
#: Reference transcripts are at most 2,000 characters (``MAX_TRANSCRIPT_CHARS``), far below this.
MAX_COMPARE_TOKENS = 2500
#: Text beyond this many characters is not even normalised (bounded time before tokenising).
MAX_COMPARE_CHARS = 64 * MAX_COMPARE_TOKENS
#: Sub-problems with at most this many DP cells are aligned with a full table (constant memory).
_SMALL_CELLS = 4096


def _encode(ref: Sequence[str], hyp: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Both token sequences as integer ids (equal tokens ↔ equal ids)."""
    vocab: dict[str, int] = {}
    a = np.fromiter((vocab.setdefault(t, len(vocab)) for t in ref), dtype=np.int32, count=len(ref))
    b = np.fromiter((vocab.setdefault(t, len(vocab)) for t in hyp), dtype=np.int32, count=len(hyp))
    return a, b


def _last_row(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Edit distances of all of ``a`` to every prefix of ``b`` (two rows, vectorised per row)."""
    m = b.size
    j = np.arange(m + 1, dtype=np.int32)
    prev, row = j.copy(), np.empty(m + 1, dtype=np.int32)
    diag, up = np.empty(m, dtype=np.int32), np.empty(m, dtype=np.int32)
    for i in range(a.size):
        np.add(prev[:-1], b != a[i], out=diag)  # substitution / match
        np.add(prev[1:], 1, out=up)  # deletion
        row[0] = i + 1
        np.minimum(diag, up, out=row[1:])
        # insertions chain along the row: row[j] = min over k ≤ j of row[k] + (j - k)
        np.subtract(row, j, out=row)
        np.minimum.accumulate(row, out=row)
        np.add(row, j, out=prev)
    return prev


def _table_align(a: np.ndarray, b: np.ndarray, i0: int, j0: int) -> list[tuple[int | None, int | None]]:
    """Full-table alignment of a small sub-problem (indices offset by ``i0``/``j0``)."""
    x, y = a.tolist(), b.tolist()
    n, m = len(x), len(y)
    dist = [list(range(m + 1))]
    for i in range(1, n + 1):
        xi, prev, row = x[i - 1], dist[i - 1], [i] * (m + 1)
        for jj in range(1, m + 1):
            row[jj] = min(prev[jj - 1] + (xi != y[jj - 1]), prev[jj] + 1, row[jj - 1] + 1)
        dist.append(row)
    pairs: list[tuple[int | None, int | None]] = []
    i, jj = n, m
    while i > 0 or jj > 0:
        if i > 0 and jj > 0 and dist[i][jj] == dist[i - 1][jj - 1] + (x[i - 1] != y[jj - 1]):
            pairs.append((i0 + i - 1, j0 + jj - 1))
            i, jj = i - 1, jj - 1
        elif i > 0 and dist[i][jj] == dist[i - 1][jj] + 1:
            pairs.append((i0 + i - 1, None))
            i -= 1
        else:
            pairs.append((None, j0 + jj - 1))
            jj -= 1
    pairs.reverse()
    return pairs


def _hirschberg(
    a: np.ndarray, b: np.ndarray, i0: int, j0: int, out: list[tuple[int | None, int | None]]
) -> None:
    """Append a minimum-edit alignment of ``a``/``b`` to ``out``: O(n·m) time, O(n + m) memory."""
    n, m = a.size, b.size
    if n == 0:
        out.extend((None, j0 + j) for j in range(m))
        return
    if m == 0:
        out.extend((i0 + i, None) for i in range(n))
        return
    if n * m <= _SMALL_CELLS or n == 1:
        out.extend(_table_align(a, b, i0, j0))
        return
    mid = n // 2
    left = _last_row(a[:mid], b)
    right = _last_row(a[mid:][::-1], b[::-1])[::-1]
    k = int(np.argmin(left + right))
    _hirschberg(a[:mid], b[:k], i0, j0, out)
    _hirschberg(a[mid:], b[k:], i0 + mid, j0 + k, out)


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """Minimum-edit alignment of two token sequences: ``(ref_i, hyp_j)``; ``None`` marks a gap.

    Only the first :data:`MAX_COMPARE_TOKENS` tokens of each side take part (Hirschberg's
    algorithm: memory linear in the tokens, time bounded by the cap).
    """
    a, b = _encode(ref[:MAX_COMPARE_TOKENS], hyp[:MAX_COMPARE_TOKENS])
    out: list[tuple[int | None, int | None]] = []
    _hirschberg(a, b, 0, 0, out)
    return out


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance of the first :data:`MAX_COMPARE_TOKENS` tokens of each side (two rows)."""
    a, b = _encode(ref[:MAX_COMPARE_TOKENS], hyp[:MAX_COMPARE_TOKENS])
    return int(_last_row(a, b)[-1])


def error_counts(ref: Sequence[str], hyp: Sequence[str]) -> ErrorCounts:
    """Substitutions, deletions and insertions between two token sequences.

    Over the first :data:`MAX_COMPARE_TOKENS` tokens of each side (``reference_length`` counts
    the compared reference tokens), so the rate of a longer text describes its opening.
    """
    ref, hyp = ref[:MAX_COMPARE_TOKENS], hyp[:MAX_COMPARE_TOKENS]
    s = d = ins = 0
    for i, j in align(ref, hyp):
        if i is None:
            ins += 1
        elif j is None:
            d += 1
        elif ref[i] != hyp[j]:
            s += 1
    return ErrorCounts(s, d, ins, len(ref))


def wer(reference: str, hypothesis: str, *, normalize: bool = True) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (may exceed 1)."""
    reference, hypothesis = reference[:MAX_COMPARE_CHARS], hypothesis[:MAX_COMPARE_CHARS]
    if normalize:
        ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    else:
        ref, hyp = reference.split(), hypothesis.split()
    return error_counts(ref, hyp).rate


def cer(reference: str, hypothesis: str, *, normalize: bool = True) -> float:
    """Character error rate (spaces count as characters after normalisation)."""
    reference, hypothesis = reference[:MAX_COMPARE_CHARS], hypothesis[:MAX_COMPARE_CHARS]
    if normalize:
        reference, hypothesis = normalize_text(reference), normalize_text(hypothesis)
    return error_counts(list(reference), list(hypothesis)).rate
