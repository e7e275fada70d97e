"""Grapheme-to-phoneme back-ends: espeak-ng (via piper-phonemize) and pinyin (jieba + pypinyin).

The third-party modules are imported on first use. espeak-ng keeps global state (the current
voice), so every call into it goes through one process-wide lock.
"""

from __future__ import annotations

import logging
import threading
from itertools import chain
from typing import Any

from .errors import TokenizerError

_ESPEAK_LOCK = threading.Lock()
_TONES = frozenset("12345")


def espeak_phonemes(text: str, voice: str) -> list[str]:
    """espeak-ng phonemes of ``text`` (all sentences concatenated), one code point per token.

    Raises :class:`TokenizerError` when piper-phonemize is missing or ``voice`` is unknown.
    """
    try:
        from piper_phonemize import phonemize_espeak
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise TokenizerError(
            "piper-phonemize is required for ZipVoice tokenization (install the 'zipvoice' extra)"
        ) from exc
    with _ESPEAK_LOCK:
        try:
            sentences = phonemize_espeak(text, voice)
        except RuntimeError as exc:
            if "voice" in str(exc).lower():
                raise TokenizerError(f"espeak-ng voice {voice!r} is not available: {exc}") from exc
            raise
    return list(chain.from_iterable(sentences))


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
