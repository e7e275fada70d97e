"""ZipVoice text tokenizers: Emilia (zh/en phones), Espeak (phones, one language), Dialog, Simple."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from itertools import chain
from pathlib import Path

from .errors import TokenizerError
from .g2p import PinyinG2P, espeak_batch, espeak_phonemes, is_tone3_syllable
from .normalize import (
    ChineseNormalizer,
    EnglishNormalizer,
    fold_punctuation,
    tighten_speaker_tags,
)
from .segment import split_segments
from .table import TokenTable

logger = logging.getLogger(__name__)

TOKENIZER_KINDS = ("emilia", "espeak", "dialog", "simple")


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
        raise TokenizerError(f"texts must be a list of strings, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TokenizerError(f"texts[{i}] must be a string, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TokenizerError(f"texts[{i}] is not valid Unicode text: {exc.reason}") from None


class Tokenizer:
    """Base class: a token table plus ``text -> tokens`` conversion implemented by subclasses."""

    def __init__(self, token_file: str | Path | TokenTable) -> None:
        self.table = token_file if isinstance(token_file, TokenTable) else TokenTable.from_file(token_file)

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the table (the model's embedding size)."""
        return self.table.vocab_size

    @property
    def pad_id(self) -> int:
        """Id of the padding token ``_``."""
        return self.table.pad_id

    @property
    def token2id(self) -> dict[str, int]:
        """A copy of the token → id mapping."""
        return dict(self.table.token2id)

    def text_to_tokens(self, text: str) -> list[str]:
        """Tokens of one (already validated) text."""
        raise NotImplementedError

    def texts_to_tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """Token strings of each text (tokens missing from the table are kept here)."""
        _check_texts(texts)
        return [self.text_to_tokens(text) for text in texts]

    def tokens_to_token_ids(self, tokens: Sequence[Sequence[str]]) -> list[list[int]]:
        """Ids of each token list; tokens missing from the table are dropped."""
        if isinstance(tokens, str) or not isinstance(tokens, Sequence):
            raise TokenizerError("tokens must be a list of token lists")
        out: list[list[int]] = []
        for seq in tokens:
            if isinstance(seq, str) or not isinstance(seq, Sequence):
                raise TokenizerError("tokens must be a list of token lists")
            out.append(self.table.ids(seq))
        return out

    def texts_to_token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text; out-of-vocabulary tokens are dropped."""
        return self.tokens_to_token_ids(self.texts_to_tokens(texts))

    def warmup(self) -> None:
        """Load lazily imported back-ends now (optional; the first call does it otherwise)."""


class SimpleTokenizer(Tokenizer):
    """Every character is a token; no normalisation."""

    def text_to_tokens(self, text: str) -> list[str]:
        """The characters of ``text``."""
        return list(text)


class EspeakTokenizer(Tokenizer):
    """espeak-ng phonemes for one language, without any text normalisation."""

    def __init__(self, token_file: str | Path | TokenTable, lang: str = "en-us") -> None:
        super().__init__(token_file)
        if not isinstance(lang, str) or not lang:
            raise TokenizerError("lang must be a non-empty espeak-ng voice name, e.g. 'en-us'")
        self.lang = lang

    def text_to_tokens(self, text: str) -> list[str]:
        """espeak-ng phonemes of ``text`` in ``self.lang``."""
        return espeak_phonemes(text, self.lang)

    def warmup(self) -> None:
        """Check that the espeak-ng voice loads."""
        espeak_phonemes("a", self.lang)


class EmiliaTokenizer(Tokenizer):
    """The ZipVoice Emilia front-end: English → espeak phones, Chinese → pinyin initials/finals.

    Text is split into language segments; ``<pinyin>`` tags (``<le5>``) give a reading
    explicitly and ``[...]`` tags (``[S1]``, ``[LAUGHS]``) pass through as single tokens. A
    segment whose normalisation or G2P fails is skipped with a warning, as upstream does.
    """

    def __init__(self, token_file: str | Path | TokenTable) -> None:
        super().__init__(token_file)
        self._lock = threading.Lock()
        self._english: EnglishNormalizer | None = None
        self._chinese: ChineseNormalizer | None = None
        self._pinyin: PinyinG2P | None = None

    def _english_normalizer(self) -> EnglishNormalizer:
        if self._english is None:
            with self._lock:
                if self._english is None:
                    self._english = EnglishNormalizer()
        return self._english

    def _chinese_frontend(self) -> tuple[ChineseNormalizer, PinyinG2P]:
        if self._chinese is None or self._pinyin is None:
            with self._lock:
                if self._pinyin is None:
                    self._pinyin = PinyinG2P()
                if self._chinese is None:
                    self._chinese = ChineseNormalizer()
        assert self._chinese is not None and self._pinyin is not None
        return self._chinese, self._pinyin

    def warmup(self) -> None:
        """Import inflect, jieba (dictionary), pypinyin, cn2an and espeak now."""
        self._english_normalizer().normalize("1")
        chinese, pinyin = self._chinese_frontend()
        chinese.normalize("1")
        pinyin.warmup()
        espeak_phonemes("a", "en-us")

    def preprocess(self, text: str) -> str:
        """Text clean-up applied before segmentation."""
        return fold_punctuation(text)

    def text_to_tokens(self, text: str) -> list[str]:
        """Tokens of one text: segment by language and tokenize each segment."""
        parts: list[list[str]] = []
        english: list[tuple[int, str]] = []  # (index in parts, normalised text) for espeak
        for segment, lang in split_segments(self.preprocess(text)):
            if lang == "tag":
                parts.append([segment])
            elif lang == "pinyin":
                parts.append(self._pinyin_tag_tokens(segment))
            elif lang == "zh":
                parts.append(self._chinese_tokens(segment))
            elif lang == "en":
                normalised = self._normalise_english(segment)
                if normalised is not None:
                    english.append((len(parts), normalised))
                parts.append([])
            else:
                logger.debug("skipping segment with no English or Chinese letters: %r", segment)
        if english:
            phonemes = espeak_batch([t for _, t in english], "en-us")
            for (index, _), tokens in zip(english, phonemes, strict=True):
                parts[index] = tokens or []
        return list(chain.from_iterable(parts))

    def _normalise_english(self, segment: str) -> str | None:
        try:
            return self._english_normalizer().normalize(segment)
        except Exception as exc:
            # Upstream drops the whole segment when normalisation fails (e.g. huge numbers).
            logger.warning("English normalisation failed, segment skipped (%s): %.80r", exc, segment)
            return None

    def _chinese_tokens(self, segment: str) -> list[str]:
        chinese, pinyin = self._chinese_frontend()
        try:
            return pinyin.tokens(chinese.normalize(segment))
        except Exception as exc:
            logger.warning("Chinese tokenization failed, segment skipped (%s): %.80r", exc, segment)
            return []

    def _pinyin_tag_tokens(self, segment: str) -> list[str]:
        syllable = segment.lstrip("<").rstrip(">")
        if not is_tone3_syllable(syllable):
            logger.warning("<...> must hold one TONE3 pinyin syllable such as <le5>; skipped %r", segment)
            return []
        _, pinyin = self._chinese_frontend()
        try:
            return pinyin.syllable_tokens(syllable)
        except Exception as exc:
            logger.warning("pinyin tag failed, skipped (%s): %r", exc, segment)
            return []


class DialogTokenizer(EmiliaTokenizer):
    """Emilia tokenizer for two-speaker dialogs written with ``[S1]``/``[S2]`` turn tags."""

    def __init__(self, token_file: str | Path | TokenTable) -> None:
        super().__init__(token_file)
        self.spk_a_id = self.table.id_of("[S1]")
        self.spk_b_id = self.table.id_of("[S2]")

    def preprocess(self, text: str) -> str:
        """Drop whitespace around speaker tags, then fold punctuation."""
        return fold_punctuation(tighten_speaker_tags(text))


def get_tokenizer(kind: str, token_file: str | Path | TokenTable, lang: str = "en-us") -> Tokenizer:
    """Build a tokenizer by name: ``emilia``, ``espeak`` (uses ``lang``), ``dialog`` or ``simple``."""
    if kind == "emilia":
        return EmiliaTokenizer(token_file)
    if kind == "espeak":
        return EspeakTokenizer(token_file, lang=lang)
    if kind == "dialog":
        return DialogTokenizer(token_file)
    if kind == "simple":
        return SimpleTokenizer(token_file)
    raise TokenizerError(f"unknown tokenizer {kind!r}; expected one of {', '.join(TOKENIZER_KINDS)}")
