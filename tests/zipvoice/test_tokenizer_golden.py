"""ZipVoice tokenizers against the reference implementation's golden outputs (README 3a)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.zipvoice.tokenizer import DialogTokenizer, EmiliaTokenizer, EspeakTokenizer, Tokenizer

pytest.importorskip("piper_phonemize")
pytest.importorskip("jieba")
pytest.importorskip("pypinyin")
pytest.importorskip("inflect")
pytest.importorskip("cn2an")

KINDS = ("emilia", "espeak", "dialog")


def _golden(reference_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((reference_dir / "golden" / "tokenizer.json").read_text("utf-8"))
    return data


def _token_file_ids(path: Path) -> dict[str, int]:
    """Independent reading of tokens.txt (only for cross-checking the table loader)."""
    out: dict[str, int] = {}
    for line in path.read_text("utf-8").split("\n"):
        if line:
            token, idx = line.split("\t")[:2]
            out[token] = int(idx)
    return out


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, Any]:
    return _golden(reference_dir)


@pytest.fixture(scope="module")
def tokenizers(reference_dir: Path, golden: dict[str, Any]) -> dict[str, Tokenizer]:
    tokens = reference_dir / golden["tokens_file"]
    dialog_tokens = reference_dir / golden["dialog_tokens_file"]
    return {
        "emilia": EmiliaTokenizer(tokens),
        "espeak": EspeakTokenizer(tokens, lang="en-us"),
        "dialog": DialogTokenizer(dialog_tokens),
    }


def test_golden_covers_all_tokenizers(golden: dict[str, Any]) -> None:
    kinds = {kind for case in golden["cases"] for kind in KINDS if kind in case}
    assert kinds == set(KINDS)
    assert len({case["id"] for case in golden["cases"]}) == len(golden["cases"])  # ids are unique


@pytest.mark.parametrize("kind", KINDS)
def test_golden_tokens_and_ids(kind: str, golden: dict[str, Any], tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers[kind]
    cases = [c for c in golden["cases"] if kind in c]
    assert cases
    failures = []
    for case in cases:
        want = case[kind]
        got_tokens = tok.texts_to_tokens([case["text"]])[0]
        got_ids = tok.texts_to_token_ids([case["text"]])[0]
        if got_tokens != want["tokens"] or got_ids != want["ids"]:
            failures.append((case["id"], got_tokens, want["tokens"], got_ids, want["ids"]))
        # ids are the table lookup of the tokens, OOV dropped.
        assert tok.tokens_to_token_ids([got_tokens])[0] == got_ids
    assert not failures, failures


@pytest.mark.parametrize("kind", KINDS)
def test_golden_batch_equals_single(
    kind: str, golden: dict[str, Any], tokenizers: dict[str, Tokenizer]
) -> None:
    cases = [c for c in golden["cases"] if kind in c]
    texts = [c["text"] for c in cases]
    original = list(texts)
    ids = tokenizers[kind].texts_to_token_ids(texts)
    assert texts == original  # inputs are not modified in place
    assert ids == [c[kind]["ids"] for c in cases]
    # Reversed order gives the same per-text results (no state carried between texts).
    assert tokenizers[kind].texts_to_token_ids(texts[::-1]) == ids[::-1]


def test_golden_oov_tag_kept_as_token(golden: dict[str, Any], tokenizers: dict[str, Tokenizer]) -> None:
    """A bracketed tag missing from the vocabulary (e.g. ``[LAUGHS]``) is a token without an id."""
    dialog = tokenizers["dialog"]
    checked = 0
    for case in golden["cases"]:
        if "dialog" not in case:
            continue
        oov_tags = [
            t
            for t in case["dialog"]["tokens"]
            if t.startswith("[") and t.endswith("]") and t not in dialog.token2id
        ]
        if not oov_tags:
            continue
        tokens = dialog.texts_to_tokens([case["text"]])[0]
        assert all(tag in tokens for tag in oov_tags)
        assert len(dialog.texts_to_token_ids([case["text"]])[0]) < len(tokens)
        checked += 1
    if not checked:
        pytest.skip("no golden dialog case has an out-of-vocabulary tag")


def test_token_tables(reference_dir: Path, golden: dict[str, Any], tokenizers: dict[str, Tokenizer]) -> None:
    plain = _token_file_ids(reference_dir / golden["tokens_file"])
    dialog_ids = _token_file_ids(reference_dir / golden["dialog_tokens_file"])
    for kind in ("emilia", "espeak"):
        assert tokenizers[kind].token2id == plain
        assert tokenizers[kind].vocab_size == len(plain)
        assert tokenizers[kind].pad_id == plain["_"]
    dialog = tokenizers["dialog"]
    assert isinstance(dialog, DialogTokenizer)
    assert dialog.token2id == dialog_ids
    assert dialog.vocab_size == len(dialog_ids)
    assert " " in plain and tokenizers["emilia"].token2id[" "] == plain[" "]
    # Speaker ids come from the file by name.
    assert dialog.spk_a_id == dialog_ids["[S1]"]
    assert dialog.spk_b_id == dialog_ids["[S2]"]
