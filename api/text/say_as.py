"""The text normaliser behind SSML ``<say-as>``: what a value is read as, in English words.

:func:`interpret` turns the content of ``<say-as interpret-as="…">`` into the words an engine
should speak. Every reading is English; for any other language (``lang`` not starting with
``en``) the text passes through unchanged (whitespace collapsed), because a wrong-language
expansion is worse than the engine's own reading. ``lang=None`` means English.

=================  ======================================================================
interpret-as       reading (English)
=================  ======================================================================
characters,        one token per character: letters upper-cased (``abc`` → ``A B C``),
spell-out,         digits as words (``7`` → ``seven``), common symbols named (``@`` → ``at``,
verbatim           ``.`` → ``dot``, ``-`` → ``dash`` …, see :data:`SYMBOL_NAMES`), other
                   characters kept; whitespace in the value becomes a comma (a short pause).
cardinal, number   ``12345`` → ``twelve thousand three hundred forty-five``; thousands commas,
                   a sign and decimals are accepted (``-3.14`` → ``minus three point one
                   four``). At most 15 integer and 10 decimal digits.
ordinal            ``21`` or ``21st`` → ``twenty-first`` (at most 15 digits).
digits             ``123`` → ``one two three``; spaces and dashes between digits are allowed.
date               ``format`` is the order of the fields: ``mdy dmy ymd ym my md dm y m d``
                   (W3C say-as note). Fields are separated by ``- / . ,`` or spaces, or
                   given as one run of digits matching the format (``20240305``, ``ymd``);
                   months may be numbers or English names. Without ``format``, ISO
                   ``2024-03-05`` is read as ymd and ``3/5/2024`` as mdy (US). Output is
                   US-style: ``March fifth, two thousand twenty-four``. Years 2000–2099 are
                   read as a number; others in pairs (``nineteen ninety-nine``, ``eighteen oh
                   five``, ``nineteen hundred``); two-digit years as two digits (``oh five``).
time               ``H:MM[:SS]`` with optional ``am``/``pm``. Default (or ``format`` containing
                   ``12``) is a 12-hour reading: ``14:30`` → ``two thirty PM``, ``9:05`` →
                   ``nine oh five AM``, ``14:00`` → ``two PM``, seconds as ``… PM and fifteen
                   seconds``. ``format`` containing ``24`` reads 24-hour: ``14:30`` →
                   ``fourteen thirty``, ``14:00`` → ``fourteen hundred``.
telephone          groups of digits/letters read digit by digit, groups separated by commas
                   (a pause): ``+1 (555) 123-4567`` → ``plus one, five five five, one two
                   three, four five six seven``. Allowed: digits, letters, spaces and
                   ``+ - . ( ) /``; at least one digit; at most 40 characters.
=================  ======================================================================

A value that cannot be read as asked raises :class:`SayAsError`, an ``InvalidRequestError``
(400, ``param="input"``, ``code="invalid_ssml"``) naming the element; the SSML parser adds the
line and column.
"""

from __future__ import annotations

import calendar
import re
import threading
from typing import TYPE_CHECKING

from api.errors import InvalidRequestError

if TYPE_CHECKING:
    import inflect

__all__ = ["SUPPORTED", "SYMBOL_NAMES", "SayAsError", "interpret", "is_supported"]

_ALIASES = {
    "characters": "characters",
    "spell-out": "characters",
    "verbatim": "characters",
    "cardinal": "cardinal",
    "number": "cardinal",
    "ordinal": "ordinal",
    "digits": "digits",
    "date": "date",
    "time": "time",
    "telephone": "telephone",
}
SUPPORTED = frozenset(_ALIASES)
"""The ``interpret-as`` values understood (others are read as plain text, with a warning)."""

SYMBOL_NAMES = {
    "@": "at",
    ".": "dot",
    "-": "dash",
    "_": "underscore",
    "/": "slash",
    "\\": "backslash",
    "+": "plus",
    "#": "hash",
    "&": "and",
    "%": "percent",
    "*": "star",
    "=": "equals",
    ":": "colon",
    "$": "dollar",
}
"""Symbols named by ``characters``/``spell-out``."""

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_MONTHS = tuple(calendar.month_name)[1:]
_MONTH_BY_NAME = {m.lower(): i + 1 for i, m in enumerate(_MONTHS)} | {
    m.lower()[:3]: i + 1 for i, m in enumerate(_MONTHS)
}
_MONTH_BY_NAME["sept"] = 9
_DATE_FORMATS = frozenset({"mdy", "dmy", "ymd", "ym", "my", "md", "dm", "y", "m", "d"})
_MAX_INT_DIGITS = 15
_MAX_DECIMALS = 10
_MAX_TELEPHONE = 40
_WS = re.compile(r"\s+")
_CARDINAL = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")
_ORDINAL = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(?:st|nd|rd|th)?", re.IGNORECASE)
_DIGITS = re.compile(r"\d+(?:[\s-]+\d+)*")
_TIME = re.compile(r"(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?\s*(?:([ap])\.?\s*m\.?)?", re.IGNORECASE)
_TELEPHONE = re.compile(r"[0-9A-Za-z +\-.()/]+")
_DATE_SEP = re.compile(r"[\s\-/.,]+")


class SayAsError(InvalidRequestError):
    """A ``<say-as>`` value that cannot be read as asked (400, names the element)."""

    def __init__(self, interpret_as: str, detail: str) -> None:
        self.element = f'<say-as interpret-as="{interpret_as}">'
        self.detail = detail
        super().__init__(f"{self.element}: {detail}", param="input", code="invalid_ssml")


_local = threading.local()


def _engine() -> inflect.engine:
    """One inflect engine per thread: its number_to_words keeps state while it runs. ``inflect``
    is imported here, on the first number spelled out (importing it costs ~2 s and ~11 MB
    resident, which a server that never meets a ``<say-as>`` number need not pay)."""
    engine = getattr(_local, "engine", None)
    if engine is None:
        import inflect

        engine = _local.engine = inflect.engine()
    return engine


def is_supported(interpret_as: str) -> bool:
    return interpret_as.strip().lower() in _ALIASES


def _is_english(lang: str | None) -> bool:
    return lang is None or lang.strip().lower().replace("_", "-").split("-")[0] in ("", "en", "eng")


def interpret(
    interpret_as: str,
    text: str,
    *,
    format: str | None = None,
    detail: str | None = None,
    lang: str | None = None,
) -> str:
    """The words to speak for ``text`` read as ``interpret_as`` (see the module table).

    ``detail`` is accepted and ignored. Raises :class:`SayAsError` for a value that cannot be
    read as asked, and for an unsupported ``interpret_as`` (check :func:`is_supported` first).
    """
    kind = _ALIASES.get(interpret_as.strip().lower())
    value = _WS.sub(" ", text).strip()
    if kind is None:
        raise SayAsError(interpret_as, "unsupported interpret-as value")
    if not _is_english(lang):
        return value
    if not value:
        raise SayAsError(interpret_as, "the element is empty")
    fmt = (format or "").strip().lower() or None
    try:
        if kind == "characters":
            return characters(value)
        if kind == "cardinal":
            return cardinal(value)
        if kind == "ordinal":
            return ordinal(value)
        if kind == "digits":
            return digits(value)
        if kind == "date":
            return date(value, fmt)
        if kind == "time":
            return time(value, fmt)
        return telephone(value)
    except ValueError as exc:
        raise SayAsError(interpret_as, str(exc)) from None


def _short(value: str) -> str:
    return value if len(value) <= 40 else value[:37] + "..."


def characters(value: str) -> str:
    """``abc-1`` → ``A B C dash one``; whitespace becomes a comma."""
    words: list[str] = []
    for token in value.split():
        if words:
            words[-1] += ","
        for ch in token:
            if ch.isdigit() and ch in "0123456789":
                words.append(_DIGIT_WORDS[int(ch)])
            elif ch.isalpha():
                words.append(ch.upper())
            else:
                words.append(SYMBOL_NAMES.get(ch, ch))
    return " ".join(words)


def _int_words(n: int) -> str:
    return str(_engine().number_to_words(str(n), andword="", comma=""))


def _digit_words(s: str) -> str:
    return " ".join(_DIGIT_WORDS[int(c)] for c in s)


def cardinal(value: str) -> str:
    """``12,345`` → ``twelve thousand three hundred forty-five``; ``-2.5`` → ``minus two point five``."""
    m = _CARDINAL.fullmatch(value.replace(" ", ""))
    if m is None:
        raise ValueError(f"'{_short(value)}' is not a number")
    sign, whole, frac = m.groups()
    whole = whole.replace(",", "")
    if len(whole.lstrip("0")) > _MAX_INT_DIGITS or (frac and len(frac) > _MAX_DECIMALS):
        raise ValueError(
            f"'{_short(value)}' has too many digits for a cardinal "
            f'(at most {_MAX_INT_DIGITS}, and {_MAX_DECIMALS} decimals); use interpret-as="digits"'
        )
    words = _int_words(int(whole))
    if frac:
        words += " point " + _digit_words(frac)
    if sign == "-":
        words = "minus " + words
    return words


def ordinal(value: str) -> str:
    """``21`` / ``21st`` → ``twenty-first``."""
    m = _ORDINAL.fullmatch(value.replace(" ", ""))
    if m is None:
        raise ValueError(f"'{_short(value)}' is not an ordinal number")
    whole = m.group(1).replace(",", "")
    if len(whole.lstrip("0")) > _MAX_INT_DIGITS:
        raise ValueError(f"'{_short(value)}' has too many digits (at most {_MAX_INT_DIGITS})")
    return str(_engine().ordinal(_int_words(int(whole))))


def digits(value: str) -> str:
    """``123`` → ``one two three`` (spaces and dashes between digits allowed)."""
    if _DIGITS.fullmatch(value) is None:
        raise ValueError(f"'{_short(value)}' is not a string of digits")
    return _digit_words(re.sub(r"[\s-]", "", value))


def year_words(year: int, ndigits: int = 4) -> str:
    """``2024`` → ``two thousand twenty-four``, ``1999`` → ``nineteen ninety-nine``, ``05`` → ``oh five``."""
    if ndigits <= 2:
        return ("oh " + _DIGIT_WORDS[year]) if year < 10 else _int_words(year)
    if year < 1000 or 2000 <= year <= 2099:
        return _int_words(year)
    hi, lo = divmod(year, 100)
    if lo == 0:
        return f"{_int_words(hi)} hundred"
    if lo < 10:
        return f"{_int_words(hi)} oh {_DIGIT_WORDS[lo]}"
    return f"{_int_words(hi)} {_int_words(lo)}"


def _month(field: str) -> int:
    month = int(field) if field.isdigit() else _MONTH_BY_NAME.get(field.lower().rstrip("."), 0)
    if not 1 <= month <= 12:
        raise ValueError(f"'{_short(field)}' is not a month")
    return month


def _split_date(value: str, fmt: str) -> list[str]:
    fields = [f for f in _DATE_SEP.split(value) if f]
    if len(fields) == 1 and len(fmt) > 1 and value.isdigit():
        widths = {"y": 4, "m": 2, "d": 2}
        if len(value) == sum(widths[c] for c in fmt):
            out, pos = [], 0
            for c in fmt:
                out.append(value[pos : pos + widths[c]])
                pos += widths[c]
            return out
    if len(fields) != len(fmt):
        raise ValueError(f"'{_short(value)}' does not match the date format '{fmt}'")
    return fields


def date(value: str, fmt: str | None = None) -> str:
    """A date read US-style: ``2024-03-05`` (ymd) → ``March fifth, two thousand twenty-four``."""
    if fmt is None:
        if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", value):
            fmt = "ymd"
        elif re.fullmatch(r"\d{1,2}/\d{1,2}/\d{2,4}", value):
            fmt = "mdy"
        else:
            raise ValueError(f"'{_short(value)}' needs a format attribute (mdy, dmy, ymd, ym, md …)")
    if fmt not in _DATE_FORMATS:
        raise ValueError(
            f"unknown date format '{_short(fmt)}' (use mdy, dmy, ymd, ym, my, md, dm, y, m or d)"
        )
    parts = dict(zip(fmt, _split_date(value, fmt), strict=True))
    year = month = day = None
    year_digits = 4
    if "y" in parts:
        if not parts["y"].isdigit() or len(parts["y"]) > 4:
            raise ValueError(f"'{_short(parts['y'])}' is not a year")
        year, year_digits = int(parts["y"]), len(parts["y"])
    if "m" in parts:
        month = _month(parts["m"])
    if "d" in parts:
        field = re.sub(r"(?i)(st|nd|rd|th)$", "", parts["d"])
        if not field.isdigit():
            raise ValueError(f"'{_short(parts['d'])}' is not a day")
        day = int(field)
        full_year = year if year is not None and year_digits > 2 else 2000  # 2000 is a leap year
        limit = calendar.monthrange(full_year, month)[1] if month else 31
        if not 1 <= day <= limit:
            raise ValueError(f"'{_short(value)}' is not a valid date")
    words: list[str] = []
    if month is not None:
        words.append(_MONTHS[month - 1])
    if day is not None:
        words.append(str(_engine().ordinal(_int_words(day))))
    text = " ".join(words)
    if year is not None:
        yw = year_words(year, year_digits)
        text = f"{text}, {yw}" if day is not None else f"{text} {yw}".strip()
    return text


def time(value: str, fmt: str | None = None) -> str:
    """``14:30`` → ``two thirty PM`` (12-hour, the default) or ``fourteen thirty`` (format ``24``)."""
    m = _TIME.fullmatch(value)
    if m is None or (m.group(2) is None and m.group(4) is None):
        raise ValueError(f"'{_short(value)}' is not a time (H:MM, H:MM:SS, optionally am/pm)")
    hour, minute, second = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    meridiem = m.group(4).lower() if m.group(4) else None
    if meridiem:
        if not 1 <= hour <= 12:
            raise ValueError(f"'{_short(value)}': the hour must be 1-12 with am/pm")
        hour = hour % 12 + (12 if meridiem == "p" else 0)
    elif hour > 23:
        raise ValueError(f"'{_short(value)}': the hour must be 0-23")
    if minute > 59 or (second is not None and int(second) > 59):
        raise ValueError(f"'{_short(value)}': minutes and seconds must be 0-59")

    def two(n: int) -> str:
        return f"oh {_DIGIT_WORDS[n]}" if n < 10 else _int_words(n)

    if fmt is not None and "24" in fmt:
        text = _int_words(hour) + (" hundred" if minute == 0 else f" {two(minute)}")
        suffix = ""
    else:
        text = _int_words(hour % 12 or 12) + ("" if minute == 0 else f" {two(minute)}")
        suffix = " PM" if hour >= 12 else " AM"
    text += suffix
    if second is not None and int(second):
        text += f" and {_int_words(int(second))} second" + ("s" if int(second) != 1 else "")
    return text


def telephone(value: str) -> str:
    """``+1 (555) 123-4567`` → ``plus one, five five five, one two three, four five six seven``."""
    if len(value) > _MAX_TELEPHONE or _TELEPHONE.fullmatch(value) is None or not re.search(r"\d", value):
        raise ValueError(
            f"'{_short(value)}' is not a telephone number (digits, letters, spaces and + - . ( ) /; "
            f"at most {_MAX_TELEPHONE} characters)"
        )
    groups = re.findall(r"[0-9A-Za-z]+", value)
    spoken = ", ".join(
        " ".join(_DIGIT_WORDS[int(c)] if c.isdigit() else c.upper() for c in group) for group in groups
    )
    return ("plus " + spoken) if value.lstrip().startswith("+") else spoken
