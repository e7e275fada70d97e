"""An SSML subset front-end: hardened parsing into an ordered list of speech and silence spans.

How the pipeline uses it
========================
When ``input`` :func:`is_ssml` (or the request says ``input_format: "ssml"``), the route calls
:func:`parse_ssml` (in a worker thread, like any heavy step) and gets an :class:`SSMLDocument`:

* it passes ``max_chars=4 * MAX_INPUT_CHARS`` (the raw markup bound), checks ``MAX_INPUT_CHARS``
  against :attr:`SSMLDocument.spoken_chars` (the spoken text, not the markup) with
  :meth:`SSMLDocument.check_spoken_chars`, and puts :attr:`SSMLDocument.warnings` in a response
  header (they are ASCII, deduplicated, at most 16);
* each :class:`Speech` span becomes one engine call (split into chunks by ``api.text.split`` as
  usual) with the span's ``voice`` (``None`` = the request's voice; otherwise any voice string the
  voice resolver accepts, registered clones included) and ``speed = request.speed * span.rate``
  clamped to 0.25–4; ``lang`` (``None`` = the request's) goes to the tokenizer. ``[S1]``/``[S2]``
  dialog turns are plain text here and reach the dialog models unchanged; a span that does not
  start with a turn tag carries the turn in effect in ``speaker``, for the dialog models to
  prefix;
* each :class:`Break` becomes exactly ``Break.samples(sample_rate)`` zero samples at the engine's
  rate, inserted between the neighbouring spans' audio (not a model pause, never trimmed);
* streaming emits the spans' audio in order; a span's audio may start as soon as it is
  synthesised. Captions/timestamps map a span back to the input with ``char_start``/``char_end``
  and, finer, with its ``pieces``.

Offsets: ``input[span.char_start:span.char_end]`` is the source of that span, from the first
non-blank character of the first text that contributes to it to the last non-blank character of
the last one. It may contain inline markup (``<mark/>``, comments, ``<say-as>``/``<sub>``
elements whose whole element, tags included, is the source of their words). Each :class:`Piece`
maps ``span.text[text_start:text_end]`` to ``input[char_start:char_end]``: for plain text the
spoken text is the source with whitespace collapsed and character references decoded; for
``<say-as>`` and ``<sub>`` it is the element's expansion. A Break's offsets cover the markup
that made it (``<break/>``, or the ``<p>``/``<s>``/``<emphasis>`` tags it was derived from).

Elements (SSML 1.1 names, with or without the SSML namespace)
=============================================================
* ``<speak>`` root only (``xml:lang`` sets the document language).
* ``<break time="500ms|2s" strength="…"/>``: ``time`` wins over ``strength``; no attribute =
  medium. Strengths (:data:`BREAK_STRENGTHS`): none 0, x-weak 0.1, weak 0.25, medium 0.4,
  strong 0.75, x-strong 1.2 s. A time above :data:`MAX_BREAK_SECONDS` (10 s) is clamped, with a
  warning; all breaks together may not exceed ``max_break_total`` (default 120 s) → 400.
* ``<p>``/``<paragraph>`` and ``<s>``/``<sentence>``: a span never crosses their boundaries; an
  implicit pause of :data:`PARAGRAPH_PAUSE` (0.5 s) / :data:`SENTENCE_PAUSE` (0.25 s) separates
  them from neighbouring speech.
* ``<prosody rate>``: x-slow 0.5, slow 0.75, medium/default 1.0, fast 1.25, x-fast 2.0
  (:data:`RATE_WORDS`); ``80%`` → 0.8; ``+20%``/``-20%`` → 1.2/0.8; a bare number is a
  multiplier. Nested prosody multiplies; the product is clamped to 0.25–4 (the API's speed
  range). ``pitch``, ``volume``, ``range``, ``contour``, ``duration`` are ignored (warning).
* ``<emphasis level>``: rate ×0.8 (strong), ×0.9 (moderate, the default), ×1.0 (none), ×1.1
  (reduced), and an implicit pause of :data:`EMPHASIS_PAUSE` (0.15 s) before it (not for none).
* ``<say-as interpret-as format detail>``: through :mod:`api.text.say_as` (characters,
  spell-out, cardinal, ordinal, digits, date, time, telephone …); text only inside. An
  unsupported ``interpret-as`` is read as text, with a warning.
* ``<sub alias>``: the alias is spoken, the content is not.
* ``<voice name>``: switches voice (any voice string) until ``</voice>``; a ``<voice>`` without
  ``name`` keeps the voice (warning). ``<lang xml:lang>`` and ``xml:lang`` on ``voice``/``p``/
  ``s`` switch the language.
* ``<mark>`` speaks nothing; ``<meta>``, ``<metadata>``, ``<lexicon>``, ``<desc>``: their content
  is skipped; ``<audio>`` is not fetched, its fallback content is read (warning); ``<phoneme>``
  reads its text (warning); ``<token>``/``<w>`` read their text.
* Any other element (or another namespace, e.g. ``mstts:``) is read as its text, with a warning.
  XInclude elements are refused (400).

Pauses: adjacent pauses (no speech between) merge: if any is an explicit ``<break>``, the
explicit ones add up (so ``<break strength="none"/>`` removes a paragraph pause); otherwise the
longest implicit pause is used. Implicit pauses at the very start or end are dropped; explicit
ones are kept.

Hardening: ``defusedxml`` with DTDs, entity declarations and external references forbidden (so
billion laughs, quadratic blowup, XXE and external DTDs fail at the ``<!DOCTYPE``), the raw size
checked before parsing (``max_chars``), the element depth (``max_depth``) and count
(``max_elements``) checked while expat streams the events (no tree is built, no recursion), and
every error an :class:`~api.errors.InvalidRequestError` (400, ``param="input"``,
``code="invalid_ssml"``) naming the line, the column and the element.
"""

from __future__ import annotations

import math
import re
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from defusedxml import DefusedXmlException, DTDForbidden
from defusedxml.ElementTree import DefusedXMLParser, ParseError

from api.errors import InvalidRequestError
from api.text import say_as

__all__ = [
    "BREAK_STRENGTHS",
    "EMPHASIS_PAUSE",
    "EMPHASIS_RATES",
    "MAX_BREAK_SECONDS",
    "PARAGRAPH_PAUSE",
    "RATE_WORDS",
    "SENTENCE_PAUSE",
    "Break",
    "Piece",
    "SSMLDocument",
    "Speech",
    "is_ssml",
    "parse_ssml",
]

SSML_NS = "http://www.w3.org/2001/10/synthesis"
XML_NS = "http://www.w3.org/XML/1998/namespace"
XINCLUDE_NS = "http://www.w3.org/2001/XInclude"
_LANG_ATTR = f"{{{XML_NS}}}lang"

RATE_WORDS = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 2.0}
"""``<prosody rate>`` keywords → speed multiplier."""
BREAK_STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.4, "strong": 0.75, "x-strong": 1.2}
"""``<break strength>`` → seconds of silence."""
EMPHASIS_RATES = {"strong": 0.8, "moderate": 0.9, "none": 1.0, "reduced": 1.1}
"""``<emphasis level>`` → speed multiplier."""
EMPHASIS_PAUSE = 0.15
"""Seconds of silence before an emphasised span (after speech)."""
SENTENCE_PAUSE = 0.25
"""Seconds of silence at an ``<s>`` boundary."""
PARAGRAPH_PAUSE = 0.5
"""Seconds of silence at a ``<p>`` boundary."""
MAX_BREAK_SECONDS = 10.0
"""Longest single ``<break>``; longer times are clamped (with a warning)."""
MIN_RATE, MAX_RATE = 0.25, 4.0

DEFAULT_MAX_CHARS = 4 * 4096
DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_ELEMENTS = 2048
DEFAULT_MAX_BREAK_TOTAL = 120.0
MAX_WARNINGS = 16

_SSML_START = re.compile(r"\A\ufeff?\s*+(?:<speak(?=[\s/>])|<\?xml[\s?]|<!DOCTYPE[\s\[]|<!--)")
_WS = re.compile(r"\s+")
_SPEAKER = re.compile(r"\[S\d+\]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_NON_PRINTABLE = re.compile(r"[^\S ]|[\x00-\x1f\x7f-\x9f]")
_TAG_END = re.compile(r"""[^>"']*+(?:(?:"[^"]*+"|'[^']*+')[^>"']*+)*+>""")
_TIME = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*", re.IGNORECASE)
_PERCENT = re.compile(r"\s*([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*%\s*")
_NUMBER = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*")

_SKIPPED = frozenset({"meta", "metadata", "lexicon", "desc"})
_READ_QUIETLY = frozenset({"token", "w"})
_BOUNDARY = {
    "p": PARAGRAPH_PAUSE,
    "paragraph": PARAGRAPH_PAUSE,
    "s": SENTENCE_PAUSE,
    "sentence": SENTENCE_PAUSE,
}
_IGNORED_PROSODY = ("pitch", "volume", "range", "contour", "duration")


@dataclass(frozen=True, slots=True)
class Piece:
    """``span.text[text_start:text_end]`` was spoken for ``input[char_start:char_end]``."""

    text_start: int
    text_end: int
    char_start: int
    char_end: int


@dataclass(frozen=True, slots=True)
class Speech:
    """Text spoken with one voice, rate and language (one engine call)."""

    text: str
    voice: str | None
    rate: float
    char_start: int
    char_end: int
    lang: str | None = None
    pieces: tuple[Piece, ...] = ()
    speaker: str | None = None
    """The dialog turn tag (``[S1]``, ``[S2]`` …) in effect where this span starts: its own
    leading tag, else the last one of an earlier span; ``None`` if none was seen yet. A dialog
    model prefixes it when ``text`` does not start with a tag."""


@dataclass(frozen=True, slots=True)
class Break:
    """Exact silence between spans."""

    seconds: float
    char_start: int
    char_end: int

    def samples(self, sample_rate: int) -> int:
        return round(self.seconds * sample_rate)


Span = Speech | Break


@dataclass(frozen=True)
class SSMLDocument:
    spans: tuple[Span, ...]
    warnings: tuple[str, ...] = ()
    lang: str | None = None

    @property
    def speech(self) -> list[Speech]:
        return [s for s in self.spans if isinstance(s, Speech)]

    @property
    def spoken_text(self) -> str:
        """All spoken text, spans joined by a space."""
        return " ".join(s.text for s in self.speech)

    @property
    def spoken_chars(self) -> int:
        """Characters of spoken text (the sum over Speech spans): what ``MAX_INPUT_CHARS`` limits."""
        return sum(len(s.text) for s in self.speech)

    @property
    def break_seconds(self) -> float:
        return sum(s.seconds for s in self.spans if isinstance(s, Break))

    def check_spoken_chars(self, limit: int) -> None:
        """400 (``param="input"``, ``code="string_above_max_length"``) if the spoken text is
        longer than ``limit`` characters (the route passes ``MAX_INPUT_CHARS``)."""
        if self.spoken_chars > limit:
            raise InvalidRequestError(
                f"'input' is too long: its SSML speaks {self.spoken_chars} characters, the limit is {limit}.",
                param="input",
                code="string_above_max_length",
            )


def is_ssml(text: str) -> bool:
    """Whether ``text`` is meant as SSML: after an optional BOM and whitespace it starts with
    ``<speak`` (then a space, ``>`` or ``/``), an XML declaration ``<?xml``, ``<!DOCTYPE`` or a
    comment ``<!--``. (The last three make markup that is not valid SSML a 400 rather than
    spoken text.)"""
    return _SSML_START.match(text) is not None


class _Fail(Exception):
    def __init__(self, message: str, offset: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass
class _Frame:
    name: str
    start: int  # char offset of "<"
    voice: str | None
    rate: float
    lang: str | None
    skip: bool = False
    collect: list[str] | None = None  # say-as text
    attrs: dict[str, str] = field(default_factory=dict)
    kind: str = ""


@dataclass
class _Pending:
    implicit: float = 0.0
    explicit: float = 0.0
    has_explicit: bool = False
    start: int = 0
    end: int = 0


def _local(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


def _safe(name: str) -> str:
    name = "".join(c if 32 < ord(c) < 127 else "?" for c in name)
    return name if len(name) <= 40 else name[:37] + "..."


class _Walker:
    """The expat target: builds the spans while the parser streams events."""

    def __init__(
        self, text: str, *, lang: str | None, max_depth: int, max_elements: int, max_break_total: float
    ):
        self.text = text
        self.max_depth = max_depth
        self.max_elements = max_elements
        self.max_break_total = max_break_total
        self.default_lang = lang
        self.parser: Any = None  # the expat parser, for positions
        self.cdata = False
        # expat reports UTF-8 byte offsets; for each non-ASCII character keep its byte offset
        # and the extra bytes up to and including it (16 bytes per non-ASCII character)
        self.wide_starts = array("q")
        self.wide_extra = array("q")
        extra = 0
        for m in _NON_ASCII.finditer(text):
            self.wide_starts.append(m.start() + extra)
            extra += len(m.group().encode("utf-8", "surrogatepass")) - 1
            self.wide_extra.append(extra)
        self.stack: list[_Frame] = []
        self.elements = 0
        self.spans: list[Span] = []
        self.warnings: list[str] = []
        self.doc_lang: str | None = None
        self.buf: list[str] = []
        self.buf_len = 0
        self.buf_key: tuple[str | None, float, str | None] | None = None
        self.pieces: list[Piece] = []
        self.plain_last = False
        self.pending: _Pending | None = None
        self.spoke = False
        self.speaker: str | None = None
        self.break_total = 0.0

    # -- positions -------------------------------------------------------------------------
    def char_offset(self, byte_offset: int) -> int:
        """The character offset in ``text`` of a UTF-8 byte offset (at a character boundary)."""
        k = bisect_left(self.wide_starts, byte_offset)  # non-ASCII characters wholly before it
        return min(len(self.text), byte_offset - (self.wide_extra[k - 1] if k else 0))

    def pos(self) -> int:
        b = self.parser.CurrentByteIndex if self.parser is not None else -1
        return self.char_offset(b) if b >= 0 else -1

    def tag_end(self, start: int) -> int:
        m = _TAG_END.match(self.text, start)
        return m.end() if m else start

    def fail(self, message: str, offset: int | None = None) -> _Fail:
        return _Fail(message, self.pos() if offset is None else offset)

    def warn(self, message: str) -> None:
        if message not in self.warnings and len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)

    # -- output ----------------------------------------------------------------------------
    def flush(self) -> None:
        text = "".join(self.buf).rstrip()
        if text and self.buf_key is not None:
            voice, rate, lang = self.buf_key
            tags = _SPEAKER.findall(text)
            lead = _SPEAKER.match(text)
            speaker = lead.group() if lead else self.speaker
            if tags:
                self.speaker = tags[-1]
            self.spans.append(
                Speech(
                    text=text,
                    voice=voice,
                    rate=rate,
                    char_start=self.pieces[0].char_start,
                    char_end=self.pieces[-1].char_end,
                    lang=lang,
                    pieces=tuple(self.pieces),
                    speaker=speaker,
                )
            )
            self.spoke = True
        self.buf, self.buf_len, self.buf_key, self.pieces, self.plain_last = [], 0, None, [], False

    def pause(self, seconds: float, start: int, end: int, *, explicit: bool) -> None:
        p = self.pending
        if p is None:
            p = self.pending = _Pending(start=start, end=end)
        p.start, p.end = min(p.start, start), max(p.end, end)
        if explicit:
            p.has_explicit = True
            p.explicit += seconds
            self.break_total += seconds
            if self.break_total > self.max_break_total:
                raise self.fail(
                    f"<break>: the breaks add up to more than {self.max_break_total:g} s of silence", start
                )
        else:
            p.implicit = max(p.implicit, seconds)

    def emit_pending(self, *, at_end: bool) -> None:
        p = self.pending
        if p is None:
            return
        self.flush()
        self.pending = None
        seconds = p.explicit if p.has_explicit else (p.implicit if self.spoke and not at_end else 0.0)
        if seconds > 0:
            self.spans.append(Break(round(seconds, 6), p.start, p.end))

    def key(self) -> tuple[str | None, float, str | None]:
        top = self.stack[-1]
        return top.voice, min(MAX_RATE, max(MIN_RATE, top.rate)), top.lang

    def add(self, spoken: str, start: int, end: int, *, plain: bool) -> None:
        """Append spoken text whose source is ``text[start:end]`` to the current span."""
        spoken = _WS.sub(" ", _NON_PRINTABLE.sub(" ", spoken))
        if not spoken.strip():
            if self.pending is None and self.buf and not self.buf[-1].endswith(" "):
                self.buf.append(" ")
                self.buf_len += 1
            return
        if self.pending is not None:
            self.emit_pending(at_end=False)
        key = self.key()
        if self.buf_key is not None and key != self.buf_key:
            self.flush()
        self.buf_key = key
        if not self.buf or self.buf[-1].endswith(" "):
            spoken = spoken.lstrip()
        lead = len(spoken) - len(spoken.lstrip())
        t0, t1 = self.buf_len + lead, self.buf_len + len(spoken.rstrip())
        if plain:
            src = self.text[start:end]
            start += len(src) - len(src.lstrip())
            end -= len(src) - len(src.rstrip())
        last = self.pieces[-1] if self.pieces else None
        if plain and self.plain_last and last is not None and not self.text[last.char_end : start].strip():
            self.pieces[-1] = Piece(last.text_start, t1, last.char_start, end)
        else:
            self.pieces.append(Piece(t0, t1, start, end))
        self.plain_last = plain
        self.buf.append(spoken)
        self.buf_len += len(spoken)

    # -- expat target ----------------------------------------------------------------------
    def source_end(self, start: int, data: str) -> int:
        """End (char offset) of the source of a character-data event starting at ``start``."""
        text, i = self.text, start
        if text.startswith(data, start) and (self.cdata or "&" not in data):
            return start + len(data)
        for ch in data:
            if i >= len(text):
                break
            c = text[i]
            if c == "&" and not self.cdata:
                semi = text.find(";", i)
                i = semi + 1 if semi >= 0 else i + 1
            elif c == "\r" and ch == "\n":
                i += 2 if text.startswith("\n", i + 1) else 1
            else:
                i += 1
        return i

    def data(self, data: str) -> None:
        if not self.stack:
            return
        top = self.stack[-1]
        if top.kind == "break":
            if data.strip():
                raise self.fail("<break> must be empty")
            return
        if top.skip:
            return
        if top.collect is not None:
            top.collect.append(data)
            return
        start = self.pos()
        self.add(data, start, self.source_end(start, data), plain=True)

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        start = self.pos()
        self.elements += 1
        ns, name = _local(tag)
        if self.elements > self.max_elements:
            raise self.fail(f"<{_safe(name)}>: more than {self.max_elements} elements", start)
        if len(self.stack) >= self.max_depth:
            raise self.fail(f"<{_safe(name)}>: elements nested deeper than {self.max_depth} levels", start)
        if ns == XINCLUDE_NS:
            raise self.fail(f"<{_safe(name)}>: XInclude is not allowed", start)
        ssml = ns is None or ns == SSML_NS
        if not self.stack:
            if not (ssml and name == "speak"):
                raise self.fail(f"<{_safe(name)}>: the root element must be <speak>", start)
            self.doc_lang = attrib.get(_LANG_ATTR) or None
            self.stack.append(
                _Frame("speak", start, None, 1.0, self.doc_lang or self.default_lang, kind="speak")
            )
            return
        parent = self.stack[-1]
        if parent.collect is not None:
            raise self.fail(f"<{_safe(name)}> is not allowed inside <say-as> (text only)", start)
        if parent.kind == "break":
            raise self.fail("<break> must be empty", start)
        frame = _Frame(
            name, start, parent.voice, parent.rate, attrib.get(_LANG_ATTR) or parent.lang, parent.skip
        )
        self.stack.append(frame)
        if frame.skip:
            return
        if not ssml:
            frame.kind = "unknown"
            self.warn(f"unknown element <{_safe(name)}> read as text")
            return
        if name == "speak":
            raise self.fail("<speak> must be the root element", start)
        frame.kind = name
        if name in _BOUNDARY:
            frame.kind = "boundary"
            self.pause(_BOUNDARY[name], start, self.tag_end(start), explicit=False)
        elif name == "break":
            self.do_break(attrib, start)
        elif name == "prosody":
            if "rate" in attrib:
                frame.rate *= self.rate(attrib["rate"], start)
            ignored = [a for a in _IGNORED_PROSODY if a in attrib]
            if ignored:
                self.warn(f"<prosody> {', '.join(ignored)} ignored (only rate is supported)")
        elif name == "emphasis":
            level = attrib.get("level", "moderate").strip().lower()
            if level not in EMPHASIS_RATES:
                raise self.fail(
                    f"<emphasis> has an invalid level '{_safe(level)}' (use strong, moderate, none or reduced)",
                    start,
                )
            frame.rate *= EMPHASIS_RATES[level]
            if level != "none":
                self.pause(EMPHASIS_PAUSE, start, self.tag_end(start), explicit=False)
        elif name == "say-as":
            interpret_as = attrib.get("interpret-as", "").strip()
            if not interpret_as:
                raise self.fail("<say-as> needs an interpret-as attribute", start)
            if say_as.is_supported(interpret_as):
                frame.collect = []
                frame.attrs = attrib
            else:
                self.warn(f'<say-as interpret-as="{_safe(interpret_as)}"> is not supported; read as text')
        elif name == "sub":
            if "alias" not in attrib:
                raise self.fail("<sub> needs an alias attribute", start)
            frame.attrs = attrib
            frame.skip = True
        elif name == "voice":
            voice = attrib.get("name", "").strip()
            if voice:
                frame.voice = voice
            elif _LANG_ATTR not in attrib:
                self.warn("<voice> without a name keeps the current voice")
        elif name in _SKIPPED or name == "mark":
            frame.skip = True
        elif name == "audio":
            self.warn("<audio> is not played; its fallback text is read")
        elif name == "phoneme":
            self.warn("<phoneme> pronunciations are not supported; its text is read")
        elif name == "lang" or name in _READ_QUIETLY:
            pass
        else:
            frame.kind = "unknown"
            self.warn(f"unknown element <{_safe(name)}> read as text")

    def element_end(self, frame: _Frame, pos: int) -> int:
        tag_end = self.tag_end(frame.start)
        if self.text[tag_end - 2 : tag_end] == "/>":
            return tag_end
        return self.text.index(">", pos) + 1

    def end(self, tag: str) -> None:
        pos = self.pos()
        frame = self.stack.pop()
        if frame.kind == "boundary":
            self.pause(_BOUNDARY[frame.name], pos, self.element_end(frame, pos), explicit=False)
        elif frame.kind == "sub" and not (self.stack and self.stack[-1].skip):
            alias = frame.attrs["alias"]
            if alias.strip():
                self.add(alias, frame.start, self.element_end(frame, pos), plain=False)
        elif frame.collect is not None:
            try:
                spoken = say_as.interpret(
                    frame.attrs["interpret-as"],
                    "".join(frame.collect),
                    format=frame.attrs.get("format"),
                    detail=frame.attrs.get("detail"),
                    lang=frame.lang,
                )
            except say_as.SayAsError as exc:
                raise self.fail(exc.message, frame.start) from None
            self.add(spoken, frame.start, self.element_end(frame, pos), plain=False)

    def comment(self, _: str) -> None:
        pass

    def pi(self, _target: str, _data: str | None = None) -> None:
        pass

    def close(self) -> None:
        return None

    def start_cdata(self) -> None:
        self.cdata = True

    def end_cdata(self) -> None:
        self.cdata = False

    # -- attribute values ------------------------------------------------------------------
    def do_break(self, attrib: dict[str, str], start: int) -> None:
        end = self.tag_end(start)
        if "time" in attrib:
            m = _TIME.fullmatch(attrib["time"])
            if m is None:
                raise self.fail(
                    f"<break> has an invalid time '{_safe(attrib['time'])}' (use e.g. 500ms or 2s)", start
                )
            seconds = float(m.group(1)) / (1000.0 if m.group(2).lower() == "ms" else 1.0)
            if not math.isfinite(seconds):
                raise self.fail(f"<break> has an invalid time '{_safe(attrib['time'])}'", start)
            if seconds > MAX_BREAK_SECONDS:
                self.warn(f"<break> longer than {MAX_BREAK_SECONDS:g} s clamped to {MAX_BREAK_SECONDS:g} s")
                seconds = MAX_BREAK_SECONDS
        else:
            strength = attrib.get("strength", "medium").strip().lower()
            if strength not in BREAK_STRENGTHS:
                raise self.fail(
                    f"<break> has an invalid strength '{_safe(strength)}' (use {', '.join(BREAK_STRENGTHS)})",
                    start,
                )
            seconds = BREAK_STRENGTHS[strength]
        self.pause(seconds, start, end, explicit=True)

    def rate(self, value: str, start: int) -> float:
        v = value.strip().lower()
        if v in RATE_WORDS:
            return RATE_WORDS[v]
        m = _PERCENT.fullmatch(v)
        if m is not None:
            sign, number = m.groups()
            pct = float(number) / 100.0
            rate = 1.0 + pct if sign == "+" else (1.0 - pct if sign == "-" else pct)
        else:
            n = _NUMBER.fullmatch(v)
            rate = float(n.group(1)) if n is not None else -1.0
        if not math.isfinite(rate) or rate <= 0:
            raise self.fail(
                f"<prosody> has an invalid rate '{_safe(value)}' (use x-slow, slow, medium, fast, x-fast, "
                "a percentage such as 80% or +20%, or a multiplier such as 1.5)",
                start,
            )
        return rate


def _line_col(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _error(text: str, message: str, offset: int | None) -> InvalidRequestError:
    where = ""
    if offset is not None and offset >= 0:
        line, col = _line_col(text, offset)
        where = f" at line {line}, column {col}"
    return InvalidRequestError(f"Invalid SSML{where}: {message}", param="input", code="invalid_ssml")


def parse_ssml(
    text: str,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    max_break_total: float = DEFAULT_MAX_BREAK_TOTAL,
    lang: str | None = None,
) -> SSMLDocument:
    """Parse SSML ``text`` (at most ``max_chars`` characters of markup) into spans.

    ``lang`` is the request's language (``None``: English for ``<say-as>``); ``xml:lang`` in the
    document overrides it. Raises :class:`~api.errors.InvalidRequestError` (400,
    ``code="invalid_ssml"``) with the line, column and element for anything refused.
    """
    if len(text) > max_chars:
        raise InvalidRequestError(
            f"Invalid SSML: the markup is {len(text)} characters long; at most {max_chars} are accepted.",
            param="input",
            code="invalid_ssml",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _error(text, "the text contains an invalid character (a lone surrogate)", exc.start) from None
    walker = _Walker(
        text, lang=lang, max_depth=max_depth, max_elements=max_elements, max_break_total=max_break_total
    )
    xml = DefusedXMLParser(target=walker, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    expat = xml.parser
    expat.buffer_text = False  # one event per run, so every event has its own position
    expat.StartCdataSectionHandler = walker.start_cdata
    expat.EndCdataSectionHandler = walker.end_cdata
    walker.parser = expat
    try:
        xml.feed(text)
        xml.close()
    except _Fail as exc:
        raise _error(text, exc.message, exc.offset) from None
    except DefusedXmlException as exc:
        what = {
            "DTDForbidden": "DOCTYPE declarations (DTDs) are not allowed",
            "EntitiesForbidden": "entity declarations are not allowed",
            "ExternalReferenceForbidden": "external references are not allowed",
        }.get(type(exc).__name__, "forbidden XML construct")
        offset = walker.pos()
        if isinstance(exc, DTDForbidden):  # point at the declaration itself
            doctype = text.find("<!DOCTYPE", 0, max(offset, 0) + 1)
            offset = doctype if doctype >= 0 else offset
        raise _error(text, what, offset) from None
    except ParseError as exc:
        b = expat.ErrorByteIndex
        where = walker.char_offset(b) if b >= 0 else None
        reason = str(exc).split(": line ")[0]
        inside = f" inside <{_safe(walker.stack[-1].name)}>" if walker.stack else ""
        raise _error(text, f"{reason}{inside}", where) from None
    walker.emit_pending(at_end=True)
    walker.flush()
    if not walker.spans:
        raise InvalidRequestError(
            "Invalid SSML: the document contains nothing to speak.", param="input", code="invalid_ssml"
        )
    return SSMLDocument(tuple(walker.spans), tuple(walker.warnings), walker.doc_lang)
