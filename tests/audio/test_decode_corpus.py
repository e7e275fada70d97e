"""The crafted corpus (``tests/audio/corpus``): every file is a clean 4xx or audio within the limits,
decoded quickly and without a memory spike, under the limits the voice resolver really uses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from api.audio.decode import decode_audio
from api.errors import APIError
from api.settings import Settings
from api.voices.sources import DECODED_BYTES_PER_SECOND
from tests.audio.corpus.make_corpus import corpus
from tests.audio.test_decode import assert_clean
from tests.audio.test_decode_fuzz import MAX_RSS_GROWTH, _reset_rss_peak, _status

CORPUS = Path(__file__).resolve().parent / "corpus"
FILES = sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix not in (".py", ".md"))

#: what each crafted file must get (status, error code); files found later default to "any 4xx"
EXPECTED = {
    "flac_rate_drop_1_10hz.flac": (400, "audio_format_change"),
    "flac_rate_drop_1hz_65535.flac": (400, "audio_format_change"),
    "flac_rate_change_8k.flac": (400, "audio_format_change"),
    "flac_rate_3hz.flac": (415, "unsupported_audio"),
    "flac_channels_1_to_8.flac": (400, "audio_format_change"),
    "wav_zero_channels.wav": (415, "unsupported_audio"),
    "flac_tiny_frames_96k.flac": (400, "audio_too_fragmented"),
}


def test_corpus_is_listed_and_reproducible() -> None:
    names = {p.name for p in FILES}
    assert set(EXPECTED) <= names
    readme = (CORPUS / "README.md").read_text()
    for name in names:
        assert f"`{name}`" in readme, f"{name} needs a line in corpus/README.md"
    for name, data in corpus().items():  # the generator still writes the committed bytes
        assert (CORPUS / name).read_bytes() == data, name


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
@pytest.mark.parametrize("target_rate", [None, 24000])
def test_corpus_file_is_refused_cleanly(path: Path, target_rate: int | None) -> None:
    settings = Settings()
    max_seconds = settings.max_reference_seconds
    max_bytes = int(max_seconds * DECODED_BYTES_PER_SECOND)  # the resolver's cap
    base = _reset_rss_peak()
    t0 = time.perf_counter()
    try:
        y, rate = decode_audio(
            path.read_bytes(), max_seconds=max_seconds, max_decoded_bytes=max_bytes, target_rate=target_rate
        )
    except APIError as err:
        assert 400 <= err.status_code < 500
        assert_clean(err)
        if path.name in EXPECTED:
            assert (err.status_code, err.code) == EXPECTED[path.name], err.message
    else:
        assert path.name not in EXPECTED, "a crafted bomb must be refused"
        assert y.shape[1] <= max_seconds * rate and y.nbytes <= max_bytes
    assert time.perf_counter() - t0 < 2.0
    peak = _status("VmHWM")
    if base is not None and peak is not None:
        assert peak - base <= MAX_RSS_GROWTH, f"peak RSS grew {(peak - base) / 1e6:.0f} MB"
