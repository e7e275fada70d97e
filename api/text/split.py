"""Sentence splitting and chunking, in linear time.

Text is cut after sentence punctuation (``. ! ? ; …`` and CJK ``。！？；``), then sentences are
packed into chunks of at most ``max_chars``. A sentence longer than that is cut at clause
punctuation, then at whitespace, then hard — never truncated, never rejected.

For streaming (``first_alone``) the first chunk is a short lead (:func:`lead_of`): the first
sentence, or when that is long its first clause of at least a few words, so that the first audio
comes after a clause, not after a whole (possibly 300-character) sentence.
"""

from __future__ import annotations

import re

# A match starts only at the beginning of a punctuation run (lookbehind) and the runs are
# possessive: a long run not followed by a space fails once, not once per position (quadratic).
_SENTENCE_END = re.compile(r"(?<![.!?;…。！？；])[.!?;…。！？；]++[\"'”’)\]]*+(?:\s+|$)|[。！？；]+")
_CLAUSE_END = re.compile(r"[,:，、：—–]+\s*")
_SPACES = re.compile(r"\s+")
# Where a clause may end inside a sentence, for the streamed first chunk: ASCII , : ; before a space
# (closing quotes/brackets kept; not 1,000 or 10:30), CJK clause punctuation, an em dash (not inside a
# number range), a spaced en dash / hyphen / double hyphen. A cut there is always between words.
_CLAUSE_CUT = re.compile(
    r"[,:;]++[\"'”’)\]]*+(?=\s)"
    r"|[，、：；]++"
    r"|(?<!\d)—++(?!\d)"
    r"|(?<=\s)(?:–|--?)(?=\s)"
)
# A spoken word for the minimum of the lead: a run of non-space, non-CJK characters, or one CJK
# character (ideographs, kana and hangul are syllables; CJK text has no spaces).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_WORD = re.compile(f"[{_CJK}]|[^\\s{_CJK}]++")

#: the streamed first chunk, in spoken characters (:func:`spoken_len`): a first sentence up to
#: ``FIRST_LONG_CHARS`` is spoken whole; a longer one is cut at its first clause end that leaves a
#: lead of at least ``FIRST_MIN_CHARS`` and ``FIRST_MIN_WORDS`` words (shorter leading clauses are
#: merged) and at most ``FIRST_MAX_CHARS``; with no such clause end a sentence longer than
#: ``FIRST_MAX_CHARS`` is cut at its last space within that. Each bound shrinks to ``max_chars``.
FIRST_MIN_CHARS = 20
FIRST_MIN_WORDS = 3
FIRST_LONG_CHARS = 50
FIRST_MAX_CHARS = 100
#: a CJK character is a syllable: about as long spoken as three Latin characters
CJK_WEIGHT = 3


def normalize_whitespace(text: str) -> str:
    """Collapse runs of whitespace and drop control characters."""
    text = "".join(ch for ch in text if ch.isprintable() or ch in "\n\t")
    return _SPACES.sub(" ", text).strip()


def _cut(text: str, pattern: re.Pattern[str]) -> list[str]:
    out: list[str] = []
    start = 0
    for m in pattern.finditer(text):
        end = m.end()
        piece = text[start:end].strip()
        if piece:
            out.append(piece)
        start = end
    rest = text[start:].strip()
    if rest:
        out.append(rest)
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (whitespace-normalised), punctuation kept."""
    return _cut(normalize_whitespace(text), _SENTENCE_END)


def _hard_split(piece: str, max_chars: int) -> list[str]:
    out: list[str] = []
    current = ""
    for word in piece.split(" "):
        while len(word) > max_chars:
            if current:
                out.append(current)
                current = ""
            out.append(word[:max_chars])
            word = word[max_chars:]
        if not word:
            continue
        if current and len(current) + 1 + len(word) > max_chars:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        out.append(current)
    return out


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    out: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) > max_chars:
            out.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        out.append(current)
    return out


def spoken_len(text: str, start: int = 0, end: int | None = None) -> int:
    """Length of ``text[start:end]`` as spoken: characters, a CJK character counting ``CJK_WEIGHT``."""
    end = len(text) if end is None else end
    return max(0, end - start) + (CJK_WEIGHT - 1) * len(_CJK_CHAR.findall(text, start, end))


def word_count(text: str, start: int = 0, end: int | None = None, *, at_most: int | None = None) -> int:
    """Spoken words in ``text[start:end]``: runs of non-space characters, each CJK character one word
    (CJK text has no spaces); counting stops at ``at_most``."""
    found = _WORD.finditer(text, start, len(text) if end is None else end)
    if at_most is not None:
        return sum(1 for _ in zip(range(at_most), found, strict=False))
    return sum(1 for _ in found)


def _enough(text: str, start: int, end: int, min_chars: int) -> bool:
    """``text[start:end]`` may be spoken alone: ``min_chars`` spoken characters and ``FIRST_MIN_WORDS``
    words, both counted in its first 256 characters only (bounded work whatever the text)."""
    start += text.startswith(" ", start)
    end = min(end, start + 256)
    return (
        spoken_len(text, start, end) >= min_chars
        and word_count(text, start, end, at_most=FIRST_MIN_WORDS) >= FIRST_MIN_WORDS
    )


def lead_of(text: str, max_chars: int) -> int | None:
    """Where the streamed first chunk of (whitespace-normalised) ``text`` ends, or ``None`` when the
    first sentence is not cut (then it is the first chunk, as split normally).

    The lead is a prefix of the first sentence ending at a clause end (the first that fits) or,
    failing one in a sentence longer than the cap, at its last space within the cap: never inside a
    word, at least ``FIRST_MIN_CHARS`` and ``FIRST_MIN_WORDS`` words, at most ``FIRST_MAX_CHARS`` (spoken
    characters, each bound at most ``max_chars``), and the text after it meets the same minimum (no
    1–2-word chunk spoken alone after it). Bounded work: one search for the first sentence end, then
    only the first ``FIRST_MAX_CHARS`` characters are scanned.
    """
    cap = min(FIRST_MAX_CHARS, max_chars)
    long = min(FIRST_LONG_CHARS, cap)
    lo = min(FIRST_MIN_CHARS, long)
    m = _SENTENCE_END.search(text)
    sentence_end = len(text[: m.end()].rstrip()) if m else len(text)
    window = min(sentence_end, cap + 8)  # ≥ cap + 1: the lookahead of a clause end at the cap
    sentence = spoken_len(text, 0, window)
    if sentence <= long:
        return None  # a short first sentence is spoken whole

    def fits(cut: int, rest: int) -> bool:
        return (
            lo <= spoken_len(text, 0, cut) <= cap
            and _enough(text, 0, cut, lo)
            and _enough(text, rest, len(text), lo)
        )

    for c in _CLAUSE_CUT.finditer(text, 0, window):
        cut = len(text[: c.end()].rstrip())
        if cut >= sentence_end or spoken_len(text, 0, cut) > cap:
            break
        if fits(cut, c.end()):
            return cut
    if sentence <= cap:
        return None  # no clause end fits: a sentence within the cap is spoken whole
    space = text.rfind(" ", 0, cap + 1)
    while space > 0 and _enough(text, 0, space, lo):  # earlier spaces only make the lead shorter
        if fits(space, space):
            return space
        space = text.rfind(" ", 0, space)
    return None


def split_text(text: str, max_chars: int, *, merge: bool = True, first_alone: bool = False) -> list[str]:
    """Chunks of at most ``max_chars`` characters covering all of ``text``.

    With ``merge`` (default) consecutive short sentences share a chunk; without, each sentence
    is its own chunk. ``first_alone`` (streaming) makes the first chunk a short lead (the first
    sentence, or its first clause when the sentence is long: :func:`lead_of`) and packs the rest
    as usual: streaming gets its first audio after one clause, and later chunks stay efficient.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    head: list[str] = []
    if merge and first_alone:
        text = normalize_whitespace(text)
        cut = lead_of(text, max_chars)
        if cut is not None:
            head, text = [text[:cut]], text[cut:]
    pieces: list[str] = []
    for sentence in split_sentences(text):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        for clause in _cut(sentence, _CLAUSE_END):
            if len(clause) <= max_chars:
                pieces.append(clause)
            else:
                pieces.extend(_hard_split(clause, max_chars))
    if not merge:
        return pieces
    if head:
        return [*head, *_pack(pieces, max_chars)]
    if first_alone and len(pieces) > 1:
        return [pieces[0], *_pack(pieces[1:], max_chars)]
    return _pack(pieces, max_chars)
