"""ZipVoice text tokenizers (our implementation, token-for-token compatible with k2-fsa/ZipVoice).

```python
tok = EmiliaTokenizer("tokens.txt")
tok.texts_to_token_ids(["Hello 世界"])
```

Heavy dependencies (piper-phonemize, inflect, jieba, pypinyin, cn2an) are imported on first use.
"""

from __future__ import annotations

from .errors import TokenizerError
from .table import TokenTable
from .tokenizers import (
    TOKENIZER_KINDS,
    DialogTokenizer,
    EmiliaTokenizer,
    EspeakTokenizer,
    SimpleTokenizer,
    Tokenizer,
    get_tokenizer,
)

__all__ = [
    "TOKENIZER_KINDS",
    "DialogTokenizer",
    "EmiliaTokenizer",
    "EspeakTokenizer",
    "SimpleTokenizer",
    "TokenTable",
    "Tokenizer",
    "TokenizerError",
    "get_tokenizer",
]
