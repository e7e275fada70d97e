"""Text normalisation for the ZipVoice front-end (behaviour-compatible with k2-fsa/ZipVoice).

English: abbreviations and numbers (money, fractions, decimals, percent, ordinals, years,
cardinals) are spelled out with ``inflect``. Chinese: Arabic numerals become Chinese numerals
with ``cn2an``. Every pattern here is written so that matching stays linear in the input length
(possessive quantifiers and look-behinds instead of backtracking over digit runs).
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

# Full-width / typographic punctuation folded to the ASCII forms in the token table. The order
# matters: each replacement sees the output of the previous one.
_PUNCTUATION_FOLDS: tuple[tuple[str, str], ...] = (
    ("，", ","),
    ("。", "."),
    ("！", "!"),
    ("？", "?"),
    ("；", ";"),
    ("：", ":"),
    ("、", ","),
    ("‘", "'"),
    ("“", '"'),
    ("”", '"'),
    ("’", "'"),
    ("⋯", "…"),
    ("···", "…"),
    ("・・・", "…"),
    ("...", "…"),
)

_SPEAKER_TAG_RE = re.compile(r"(\[S[12]\])")


def fold_punctuation(text: str) -> str:
    """Map Chinese/typographic punctuation to the ASCII (or ``…``) forms the model knows."""
    for src, dst in _PUNCTUATION_FOLDS:
        text = text.replace(src, dst)
    return text


def tighten_speaker_tags(text: str) -> str:
    """Remove all whitespace directly before or after ``[S1]``/``[S2]`` speaker-turn tags."""
    pieces = _SPEAKER_TAG_RE.split(text)
    if len(pieces) == 1:
        return text
    # split() with one capture group alternates text, tag, text, ..., text.
    last = len(pieces) - 1
    for i in range(0, len(pieces), 2):
        piece = pieces[i]
        if i > 0:
            piece = piece.lstrip()
        if i < last:
            piece = piece.rstrip()
        pieces[i] = piece
    return "".join(pieces)


# (abbreviation, expansion); matched case-insensitively as whole words. Expansions contain no
# abbreviation as a whole word, so a single alternation gives the same result as one pass each.
_ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("mrs", "misess"),
    ("mr", "mister"),
    ("drs", "doctors"),
    ("dr", "doctor"),
    ("st", "saint"),
    ("co", "company"),
    ("jr", "junior"),
    ("maj", "major"),
    ("gen", "general"),
    ("rev", "reverend"),
    ("lt", "lieutenant"),
    ("hon", "honorable"),
    ("sgt", "sergeant"),
    ("capt", "captain"),
    ("esq", "esquire"),
    ("ltd", "limited"),
    ("col", "colonel"),
    ("ft", "fort"),
    ("etc", "et cetera"),
    ("btw", "by the way"),
)
_ABBREVIATION_RE = re.compile(
    r"\b(?:" + "|".join(f"({abbr})" for abbr, _ in _ABBREVIATIONS) + r")\b", re.IGNORECASE
)

# Number patterns. ASCII digits only (``\d`` would also match other scripts' digits).
# A run of digits and commas, starting at a digit.
_DIGIT_COMMA_RUN_RE = re.compile(r"[0-9][0-9,]*+")
_POUNDS_RE = re.compile(r"£([0-9,]*+)")
_DOLLARS_RE = re.compile(r"\$([0-9.,]*+)")
# Starting only at the first digit of a run keeps these linear: a failed attempt inside a
# digit run would fail for the same reason as the attempt at its start.
_FRACTION_RE = re.compile(r"(?<![0-9])([0-9]++)/([0-9]++)")
_DECIMAL_RE = re.compile(r"(?<![0-9])([0-9]++)\.([0-9]++)")
# A whole run of digits, dots and commas that ends in a digit and is followed by ``%``.
_PERCENT_RE = re.compile(r"(?<![0-9.,])([0-9.,]*+)(?<=[0-9])%")
_ORDINAL_RE = re.compile(r"(?<![0-9])[0-9]++(?:st|nd|rd|th)")
_CARDINAL_RE = re.compile(r"[0-9]++")


def _split_at_last_digit(run: str) -> tuple[str, str]:
    """Split ``run`` after its last ASCII digit: (head ending in a digit, tail without digits)."""
    for i in range(len(run) - 1, -1, -1):
        if "0" <= run[i] <= "9":
            return run[: i + 1], run[i + 1 :]
    return "", run


class EnglishNormalizer:
    """Spell out English abbreviations and numbers so that espeak reads them as upstream does.

    The ``inflect`` engine is created on first use (importing it takes about 2 s) and guarded by
    a lock, because it keeps per-call state on the engine object.
    """

    def __init__(self) -> None:
        self._engine: Any = None
        self._lock = threading.RLock()
        # inflect is slow (~0.2 ms a call); inputs full of numbers repeat the same few.
        self._words = functools.lru_cache(maxsize=4096)(self._number_to_words)
        self._ordinal = functools.lru_cache(maxsize=1024)(self._ordinal_of)

    def _inflect(self) -> Any:
        if self._engine is None:
            import inflect

            self._engine = inflect.engine()
        return self._engine

    def _number_to_words(
        self, num: int | str, andword: str = "and", zero: str = "zero", group: int = 0
    ) -> str:
        result: str = self._inflect().number_to_words(num, andword=andword, zero=zero, group=group)
        return result

    def _ordinal_of(self, words: str) -> str:
        result: str = self._inflect().ordinal(words)
        return result

    def normalize(self, text: str) -> str:
        """Expand abbreviations, then numbers. May raise ``ValueError`` on unreadable numbers."""
        with self._lock:
            text = self.expand_abbreviations(text)
            return self.expand_numbers(text)

    @staticmethod
    def expand_abbreviations(text: str) -> str:
        """Replace whole-word abbreviations (``Dr``, ``Mrs``, ``etc`` ...) by full words."""

        def repl(m: re.Match[str]) -> str:
            assert m.lastindex is not None
            return _ABBREVIATIONS[m.lastindex - 1][1]

        return _ABBREVIATION_RE.sub(repl, text)

    def expand_numbers(self, text: str) -> str:
        """Apply the number rules in order: commas, £, $, a/b, a.b, a%, 3rd, plain numbers."""
        text = _DIGIT_COMMA_RUN_RE.sub(self._drop_grouping_commas, text)
        text = _POUNDS_RE.sub(self._pounds, text)
        text = _DOLLARS_RE.sub(self._dollars, text)
        text = _FRACTION_RE.sub(self._fraction, text)
        text = _DECIMAL_RE.sub(lambda m: f"{m.group(1)} point {m.group(2)}", text)
        text = _PERCENT_RE.sub(lambda m: f"{m.group(1)} percent ", text)
        text = _ORDINAL_RE.sub(lambda m: f" {self._words(m.group(0))} ", text)
        return _CARDINAL_RE.sub(lambda m: self._cardinal(int(m.group(0))), text)

    @staticmethod
    def _drop_grouping_commas(m: re.Match[str]) -> str:
        head, tail = _split_at_last_digit(m.group(0))
        return head.replace(",", "") + tail

    @staticmethod
    def _pounds(m: re.Match[str]) -> str:
        amount, rest = _split_at_last_digit(m.group(1))
        if not amount:
            return m.group(0)
        return f"{amount} pounds{rest}"

    @staticmethod
    def _dollars(m: re.Match[str]) -> str:
        amount, rest = _split_at_last_digit(m.group(1))
        if not amount:
            return m.group(0)
        return EnglishNormalizer._say_dollars(amount) + rest

    @staticmethod
    def _say_dollars(amount: str) -> str:
        fields = amount.split(".")
        if len(fields) > 2:
            return f" {amount} dollars "
        dollars = int(fields[0]) if fields[0] else 0
        cents = int(fields[1]) if len(fields) == 2 and fields[1] else 0
        dollar_word = "dollar" if dollars == 1 else "dollars"
        cent_word = "cent" if cents == 1 else "cents"
        if dollars and cents:
            return f" {dollars} {dollar_word}, {cents} {cent_word} "
        if dollars:
            return f" {dollars} {dollar_word} "
        if cents:
            return f" {cents} {cent_word} "
        return " zero dollars "

    def _fraction(self, m: re.Match[str]) -> str:
        top, bottom = int(m.group(1)), int(m.group(2))
        words = self._words
        if top == 1 and bottom in (2, 4):
            return " one half " if bottom == 2 else " one quarter "
        if bottom == 2:
            return f" {words(top)} halves "
        if bottom == 4:
            return f" {words(top)} quarters "
        return f" {words(top)} {self._ordinal(words(bottom))} "

    def _cardinal(self, num: int) -> str:
        words = self._words
        if 1000 < num < 3000:
            # Read like a year: "nineteen eighty-four", "two thousand five", "twenty hundred".
            if num == 2000:
                return " two thousand "
            if 2000 < num < 2010:
                return f" two thousand {words(num % 100)} "
            if num % 100 == 0:
                return f" {words(num // 100)} hundred "
            paired = words(num, andword="", zero="oh", group=2)
            return f" {paired.replace(', ', ' ')} "
        return f" {words(num, andword='')} "


class ChineseNormalizer:
    """Convert Arabic numerals (dates, percent, fractions, plain numbers) to Chinese numerals."""

    def __init__(self) -> None:
        self._transform: Any = None
        self._lock = threading.Lock()

    def normalize(self, text: str) -> str:
        """``cn2an`` "an2cn" transform of ``text``."""
        if self._transform is None:
            with self._lock:
                if self._transform is None:
                    import cn2an

                    self._transform = cn2an.transform
        result: str = self._transform(text, "an2cn")
        return result
