"""Word and character error rates with a simple English normaliser.

The normaliser lowercases, folds curly quotes, drops apostrophes inside words
(``don't`` → ``dont``), turns every other punctuation or symbol into a space and
collapses whitespace. Numbers are left as they are (``10`` and ``ten`` differ).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_APOSTROPHES = {"'", "\u2019", "\u2018", "\u02bc", "`"}


def normalize_text(text: str) -> str:
    """Lowercase, strip punctuation (apostrophes vanish, the rest become spaces), collapse spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    for ch in text:
        if ch in _APOSTROPHES:
            continue
        cat = unicodedata.category(ch)
        out.append(" " if cat[0] in "PSZC" else ch)
    return " ".join("".join(out).split())


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


def _backtrace(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """Levenshtein alignment as (ref index | None, hyp index | None) pairs, in order."""
    n, m = len(ref), len(hyp)
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        dist[i][0] = i
    for j in range(m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        ri = ref[i - 1]
        row, prev = dist[i], dist[i - 1]
        for j in range(1, m + 1):
            cost = 0 if ri == hyp[j - 1] else 1
            row[j] = min(prev[j - 1] + cost, prev[j] + 1, row[j - 1] + 1)
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and dist[i][j] == dist[i - 1][j - 1] + (0 if ref[i - 1] == hyp[j - 1] else 1):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and dist[i][j] == dist[i - 1][j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    pairs.reverse()
    return pairs


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """Minimum-edit alignment of two token sequences: ``(ref_i, hyp_j)``; ``None`` marks a gap."""
    return _backtrace(ref, hyp)


def error_counts(ref: Sequence[str], hyp: Sequence[str]) -> ErrorCounts:
    """Substitutions, deletions and insertions between two token sequences."""
    s = d = ins = 0
    for i, j in _backtrace(ref, hyp):
        if i is None:
            ins += 1
        elif j is None:
            d += 1
        elif ref[i] != hyp[j]:
            s += 1
    return ErrorCounts(s, d, ins, len(ref))


def wer(reference: str, hypothesis: str, *, normalize: bool = True) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (may exceed 1)."""
    if normalize:
        ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    else:
        ref, hyp = reference.split(), hypothesis.split()
    return error_counts(ref, hyp).rate


def cer(reference: str, hypothesis: str, *, normalize: bool = True) -> float:
    """Character error rate (spaces count as characters after normalisation)."""
    if normalize:
        reference, hypothesis = normalize_text(reference), normalize_text(hypothesis)
    return error_counts(list(reference), list(hypothesis)).rate
