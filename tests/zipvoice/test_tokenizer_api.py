"""ZipVoice tokenizer API: token tables, errors, factory, laziness, threads, long inputs."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from api.zipvoice.tokenizer import (
    DialogTokenizer,
    EmiliaTokenizer,
    EspeakTokenizer,
    SimpleTokenizer,
    TokenizerError,
    TokenTable,
    get_tokenizer,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _needs_frontend() -> None:
    for mod in ("piper_phonemize", "jieba", "pypinyin", "inflect", "cn2an"):
        pytest.importorskip(mod)


@pytest.fixture(scope="module")
def token_file(reference_dir: Path) -> Path:
    return reference_dir / "models" / "zipvoice" / "tokens.txt"


@pytest.fixture(scope="module")
def dialog_token_file(reference_dir: Path) -> Path:
    return reference_dir / "models" / "zipvoice_dialog" / "tokens.txt"


@pytest.fixture(scope="module")
def emilia(token_file: Path) -> EmiliaTokenizer:
    _needs_frontend()
    return EmiliaTokenizer(token_file)


@pytest.fixture(scope="module")
def dialog(dialog_token_file: Path) -> DialogTokenizer:
    _needs_frontend()
    return DialogTokenizer(dialog_token_file)


# --- token tables -------------------------------------------------------------------------


def test_table_space_token_and_pad(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text("_\t0\n \t1\na\t2\n\tb\t3\n\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="expected"):
        TokenTable.from_file(path)
    path.write_text("_\t0\n \t1\na\t2\r\n", encoding="utf-8")
    table = TokenTable.from_file(path)
    assert dict(table.token2id) == {"_": 0, " ": 1, "a": 2}
    assert table.pad_id == 0 and table.vocab_size == 3
    assert table.ids(["a", " ", "zz", "_"]) == [2, 1, 0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a\t1\n", "padding"),
        ("_\t0\n_\t1\n", "duplicate"),
        ("_\t0\nx\tone\n", "not an integer"),
        ("_\t0\nnotab\n", "expected"),
    ],
)
def test_table_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TokenizerError, match=message):
        EmiliaTokenizer(path)


def test_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="cannot read"):
        EspeakTokenizer(tmp_path / "nope.txt")


def test_dialog_needs_speaker_tokens(token_file: Path) -> None:
    with pytest.raises(TokenizerError, match=r"\[S1\]"):
        DialogTokenizer(token_file)


# --- factory and errors -------------------------------------------------------------------


def test_get_tokenizer(token_file: Path, dialog_token_file: Path) -> None:
    assert type(get_tokenizer("emilia", token_file)) is EmiliaTokenizer
    assert type(get_tokenizer("dialog", dialog_token_file)) is DialogTokenizer
    assert type(get_tokenizer("simple", token_file)) is SimpleTokenizer
    esp = get_tokenizer("espeak", token_file, lang="fr-fr")
    assert isinstance(esp, EspeakTokenizer) and esp.lang == "fr-fr"
    with pytest.raises(TokenizerError, match="unknown tokenizer"):
        get_tokenizer("bpe", token_file)
    assert issubclass(TokenizerError, ValueError)


@pytest.mark.parametrize("bad", ["a bare string", [b"bytes"], [None], ["ok", 3], ["\ud800 lone surrogate"]])
def test_unusable_texts_raise(token_file: Path, bad: object) -> None:
    tok = SimpleTokenizer(token_file)
    with pytest.raises(TokenizerError):
        tok.texts_to_tokens(bad)  # type: ignore[arg-type]
    with pytest.raises(TokenizerError):
        tok.texts_to_token_ids(bad)  # type: ignore[arg-type]


def test_bad_token_lists_raise(token_file: Path) -> None:
    tok = SimpleTokenizer(token_file)
    with pytest.raises(TokenizerError):
        tok.tokens_to_token_ids(["ab"])  # type: ignore[list-item]
    with pytest.raises(TokenizerError):
        tok.tokens_to_token_ids([[1, 2]])  # type: ignore[list-item]


def test_unknown_espeak_voice(token_file: Path) -> None:
    pytest.importorskip("piper_phonemize")
    with pytest.raises(TokenizerError, match="voice"):
        EspeakTokenizer(token_file, lang="xx-nonexistent").texts_to_tokens(["hello"])


def test_espeak_other_language(token_file: Path) -> None:
    pytest.importorskip("piper_phonemize")
    tok = EspeakTokenizer(token_file, lang="de")
    ids = tok.texts_to_token_ids(["Guten Tag"])[0]
    assert ids and all(0 <= i < tok.vocab_size for i in ids)


# --- behaviour ----------------------------------------------------------------------------


def test_empty_and_punctuation_only(emilia: EmiliaTokenizer, dialog: DialogTokenizer) -> None:
    assert emilia.texts_to_tokens([]) == []
    assert emilia.texts_to_token_ids(["", "   ", "!?…", "\n"]) == [[], [], [], []]
    assert dialog.texts_to_token_ids(["", "[S1]"]) == [[], [dialog.spk_a_id]]


def test_pinyin_tag(emilia: EmiliaTokenizer) -> None:
    assert emilia.texts_to_tokens(["<le5>"]) == [["l0", "e5"]]
    assert emilia.texts_to_tokens(["<a5>"]) == [["a5"]]
    assert emilia.texts_to_tokens(["<le>", "<>"]) == [[], []]  # not TONE3 pinyin: skipped


def test_no_state_between_texts(emilia: EmiliaTokenizer) -> None:
    """espeak-ng leaks "dot" after ``word..``; each text must be tokenized as if alone."""
    alone = emilia.texts_to_tokens(["hello"])[0]
    assert emilia.texts_to_tokens(["mr..", "hello"])[1] == alone
    esp = EspeakTokenizer(emilia.table)
    assert esp.texts_to_tokens(["etc..", "hello"])[1] == esp.texts_to_tokens(["hello"])[0]


def test_threads_agree(emilia: EmiliaTokenizer) -> None:
    texts = ["Dr. Smith paid $3.50.", "今天天气很好。", "我喜欢用iPhone 15听歌。", "mr.. hello <le5>"] * 8
    expected = [emilia.texts_to_token_ids([t])[0] for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda t: emilia.texts_to_token_ids([t])[0], texts))
    assert got == expected


@pytest.mark.parametrize(
    "unit",
    [
        "Dr. Smith paid $3.50 for 2 apples on Jan. 5th, 2024; 45% of 1/2. ",
        "超过90%的人在2024年1月1日来到北京，花了3.5元。",
        "[S1] 我喜欢用iPhone 15听Taylor Swift的歌<le5>! [S2] Oh [LAUGHS] really? ",
        "<<[[ 1,2.3/4%$£ \n",
    ],
)
def test_long_input_is_fast(emilia: EmiliaTokenizer, dialog: DialogTokenizer, unit: str) -> None:
    emilia.warmup()
    text = (unit * (20000 // len(unit) + 1))[:20000]
    for tok in (emilia, dialog):
        # CPU time of this process, not wall time: other work on a shared machine does not count
        start = time.process_time()
        tokens = tok.texts_to_tokens([text])[0]
        assert time.process_time() - start < 5.0
        assert tok.tokens_to_token_ids([tokens])[0] == tok.texts_to_token_ids([text])[0]


def test_imports_are_lazy(token_file: Path) -> None:
    """Building a tokenizer must not import inflect/jieba/espeak (seconds of start-up)."""
    code = (
        "import sys\n"
        "from api.zipvoice.tokenizer import get_tokenizer\n"
        f"tok = get_tokenizer('emilia', {str(token_file)!r})\n"
        "heavy = {'inflect', 'jieba', 'pypinyin', 'cn2an', 'piper_phonemize'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_english_text_leaves_the_chinese_frontend_unloaded(token_file: Path) -> None:
    """English text must not load jieba's dictionary or pypinyin (tens of MB resident for the
    life of the process); the first Chinese text does."""
    code = (
        "import sys\n"
        "from api.zipvoice.tokenizer import get_tokenizer\n"
        f"tok = get_tokenizer('emilia', {str(token_file)!r})\n"
        "assert tok.texts_to_tokens(['Hello there, it is 10:30 on May 5th.'])[0]\n"
        "print(sorted({'jieba', 'pypinyin', 'cn2an'} & set(sys.modules)))\n"
        "tok.texts_to_tokens(['你好'])\n"
        "print(sorted({'jieba', 'pypinyin'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[:2] == ["[]", "['jieba', 'pypinyin']"]
