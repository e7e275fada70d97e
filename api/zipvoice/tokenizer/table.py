"""Token table: the ``tokens.txt`` file that maps token strings to integer ids."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TokenizerError

PAD_TOKEN = "_"


@dataclass(frozen=True)
class TokenTable:
    """Immutable token → id mapping with the padding id."""

    token2id: Mapping[str, int]
    pad_id: int
    source: str = field(default="<memory>", compare=False)

    @classmethod
    def from_mapping(cls, token2id: Mapping[str, int], source: str = "<memory>") -> TokenTable:
        """Build a table from a mapping; ``_`` must be present (it is the padding token)."""
        if PAD_TOKEN not in token2id:
            raise TokenizerError(f"token table {source} has no padding token {PAD_TOKEN!r}")
        return cls(token2id=dict(token2id), pad_id=token2id[PAD_TOKEN], source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> TokenTable:
        """Read ``token<TAB>id`` lines; the token may itself be a space, blank lines are ignored."""
        path = Path(path)
        try:
            # Text mode: "\r\n" and "\r" become "\n"; no other character splits a line.
            with path.open(encoding="utf-8-sig") as fh:
                raw = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenizerError(f"cannot read token file {path}: {exc}") from exc
        return cls.from_mapping(parse_token_lines(raw.split("\n"), str(path)), str(path))

    @property
    def vocab_size(self) -> int:
        """Number of entries in the table (as the reference implementation counts it)."""
        return len(self.token2id)

    def __len__(self) -> int:
        return len(self.token2id)

    def __contains__(self, token: object) -> bool:
        return token in self.token2id

    def id_of(self, token: str) -> int:
        """Id of ``token``; :class:`TokenizerError` when it is not in the table."""
        try:
            return self.token2id[token]
        except KeyError:
            raise TokenizerError(f"token {token!r} is not in {self.source}") from None

    def ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``, silently dropping tokens that are not in the table."""
        lookup = self.token2id.get
        out: list[int] = []
        for token in tokens:
            if not isinstance(token, str):
                raise TokenizerError(f"tokens must be strings, got {type(token).__name__}")
            idx = lookup(token)
            if idx is not None:
                out.append(idx)
        return out


def parse_token_lines(lines: Iterable[str], source: str = "<memory>") -> dict[str, int]:
    """Parse ``token<TAB>id`` lines into a dict, rejecting malformed lines and duplicates."""
    table: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[0] == "":
            raise TokenizerError(f"{source}:{lineno}: expected 'token<TAB>id', got {line!r}")
        token, id_text = fields[0], fields[1].strip()
        try:
            idx = int(id_text)
        except ValueError:
            raise TokenizerError(f"{source}:{lineno}: id {id_text!r} is not an integer") from None
        if token in table:
            raise TokenizerError(f"{source}:{lineno}: duplicate token {token!r}")
        table[token] = idx
    return table
