"""Grapheme-to-phoneme back-ends: espeak-ng (via piper-phonemize) and pinyin (jieba + pypinyin).

The third-party modules are imported on first use. espeak-ng keeps global state (the current
voice), so every call into it goes through one process-wide lock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from itertools import chain
from typing import Any

from .errors import TokenizerError

logger = logging.getLogger(__name__)

_ESPEAK_LOCK = threading.Lock()
_TONES = frozenset("12345")


def _phonemizer() -> Any:
    try:
        from piper_phonemize import phonemize_espeak
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise TokenizerError(
            "piper-phonemize is required for ZipVoice tokenization (install the 'zipvoice' extra)"
        ) from exc
    return phonemize_espeak


def espeak_batch(texts: Sequence[str], voice: str) -> list[list[str] | None]:
    """espeak-ng phonemes of each text (sentences concatenated, one code point per token).

    The calls run back to back under the process-wide lock, between two empty calls: espeak-ng
    can carry state from one call into the next (a text ending in ``word..`` makes the next call
    start with "dot"); an empty call absorbs it, so results never depend on what was phonemized
    before (by us or anyone else in the process). ``None`` marks a text that espeak-ng failed on. Raises
    :class:`TokenizerError` when piper-phonemize is missing or ``voice`` is unknown.
    """
    phonemize = _phonemizer()
    out: list[list[str] | None] = []
    if not texts:
        return out
    with _ESPEAK_LOCK:
        _flush(phonemize, voice)
        try:
            for text in texts:
                try:
                    out.append(list(chain.from_iterable(phonemize(text, voice))))
                except RuntimeError as exc:
                    if "voice" in str(exc).lower():
                        raise TokenizerError(f"espeak-ng voice {voice!r} is not available: {exc}") from exc
                    logger.warning("espeak-ng failed (%s) on %.80r", exc, text)
                    out.append(None)
        finally:
            _flush(phonemize, voice)
    return out


def _flush(phonemize: Any, voice: str) -> None:
    with contextlib.suppress(RuntimeError):
        phonemize("", voice)


def espeak_phonemes(text: str, voice: str) -> list[str]:
    """espeak-ng phonemes of one text (see :func:`espeak_batch`); ``[]`` if espeak-ng fails."""
    return espeak_batch([text], voice)[0] or []


def is_tone3_syllable(text: str) -> bool:
    """True for a TONE3 pinyin syllable: letters followed by one tone digit 1-5 (``le5``)."""
    return text[:-1].isalpha() and text[-1:] in _TONES


class PinyinG2P:
    """Chinese text → pinyin initials (suffixed ``0``) and TONE3 finals.

    jieba's dictionary (about 1 s to load) and pypinyin are loaded on the first call.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mods: tuple[Any, Any, Any, Any, Any] | None = None

    def _modules(self) -> tuple[Any, Any, Any, Any, Any]:
        mods = self._mods
        if mods is None:
            with self._lock:
                if self._mods is None:
                    import jieba
                    from pypinyin import Style, lazy_pinyin
                    from pypinyin.contrib.tone_convert import to_finals_tone3, to_initials

                    jieba.setLogLevel(logging.INFO)
                    jieba.initialize()
                    self._mods = (jieba, lazy_pinyin, Style.TONE3, to_initials, to_finals_tone3)
                mods = self._mods
        return mods

    def warmup(self) -> None:
        """Load jieba and pypinyin now instead of on the first Chinese text."""
        self._modules()

    def syllable_tokens(self, syllable: str) -> list[str]:
        """Split one TONE3 syllable into ``[initial + "0", final]`` (either may be absent)."""
        _, _, _, to_initials, to_finals_tone3 = self._modules()
        out: list[str] = []
        initial = to_initials(syllable, strict=False)
        final = to_finals_tone3(syllable, strict=False, neutral_tone_with_five=True)
        if initial:
            # The "0" keeps pinyin initials apart from espeak phoneme tokens.
            out.append(initial + "0")
        if final:
            out.append(final)
        return out

    def tokens(self, text: str) -> list[str]:
        """Word-segment ``text`` with jieba, read it as TONE3 pinyin, split each syllable.

        Non-Chinese stretches (punctuation, symbols) come back unchanged as single tokens.
        """
        jieba, lazy_pinyin, tone3, _, _ = self._modules()
        words = list(jieba.cut(text))
        readings = lazy_pinyin(words, style=tone3, tone_sandhi=True, neutral_tone_with_five=True)
        out: list[str] = []
        for reading in readings:
            if is_tone3_syllable(reading):
                out.extend(self.syllable_tokens(reading))
            else:
                out.append(reading)
        return out
