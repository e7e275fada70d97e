from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from api.assets import AssetCheckError, join_parts


def _parts(tmp_path: Path) -> tuple[list[Path], bytes]:
    blobs = [b"alpha" * 1000, b"", b"beta" * 3333]
    paths = []
    for i, blob in enumerate(blobs):
        p = tmp_path / f"part{i}"
        p.write_bytes(blob)
        paths.append(p)
    return paths, b"".join(blobs)


def test_join_verifies_and_renames_into_place(tmp_path: Path) -> None:
    parts, whole = _parts(tmp_path)
    out = join_parts(
        parts, tmp_path / "out" / "model.bin", sha256=hashlib.sha256(whole).hexdigest(), size=len(whole)
    )
    assert out.read_bytes() == whole
    assert [p.name for p in out.parent.iterdir()] == ["model.bin"]  # no temp file left


@pytest.mark.parametrize("wrong", ["digest", "size"])
def test_a_mismatch_leaves_nothing(tmp_path: Path, wrong: str) -> None:
    parts, whole = _parts(tmp_path)
    digest = hashlib.sha256(whole).hexdigest()
    size = len(whole)
    if wrong == "digest":
        digest = hashlib.sha256(whole + b"x").hexdigest()
    else:
        size += 1
    out = tmp_path / "out" / "model.bin"
    with pytest.raises(AssetCheckError):
        join_parts(parts, out, sha256=digest, size=size)
    assert list(out.parent.iterdir()) == []
