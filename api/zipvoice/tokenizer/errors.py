"""Error type raised by the ZipVoice tokenizers."""

from __future__ import annotations


class TokenizerError(ValueError):
    """Unusable tokenizer input or configuration (bad token table, bad text, unknown kind)."""
