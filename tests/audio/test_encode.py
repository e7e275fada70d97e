"""Encoders: every format round-trips through our decoder, whole and streamed.

Duration tolerances (decoded minus input), stated per codec:

* wav, pcm, flac: exact sample count.
* opus: within ±10 ms (Ogg pre-skip and end granule trim the codec delay); decodes at 48 kHz.
* mp3 whole file: within ±5 ms (the Xing/LAME header tells the decoder to trim delay and padding).
* mp3 streamed: 0 to +80 ms longer (no LAME header in a stream: 1105-sample encoder delay plus
  under one 576-sample frame of padding is at most 70 ms at 24 kHz).
* aac (ADTS has no delay signalling): 0 to +90 ms longer (1024 priming samples plus under one
  1024-sample frame of padding is at most 85 ms at 24 kHz).
"""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest

from api.audio.decode import RawPCM, decode_audio
from api.audio.encode import (
    CONTENT_TYPES,
    StreamEncoder,
    available_formats,
    encode_audio,
    get_format,
)
from api.audio.encode import FORMATS as OUTPUT_FORMATS
from api.errors import InvalidRequestError
from tests.audio import TONES, dominant_freq, sine

RATE = 24000
SECONDS = 1.3  # not a whole number of any codec's frames
FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
EXACT = {"wav", "pcm", "flac"}
#: (min, max) of decoded minus input duration, seconds, by (format, streamed)
TOLERANCE = {
    ("opus", False): (-0.010, 0.010),
    ("opus", True): (-0.010, 0.010),
    ("mp3", False): (-0.005, 0.005),
    ("mp3", True): (0.0, 0.080),
    ("aac", False): (0.0, 0.090),
    ("aac", True): (0.0, 0.090),
}
#: uneven chunk sizes (samples) for streaming, including an empty and a one-sample chunk
CHUNKS = [1, 577, 0, 4096, 3, 10000, 1999]


def split(x: np.ndarray) -> list[np.ndarray]:
    """Cut ``(channels, n)`` into the uneven ``CHUNKS`` sizes, then the rest."""
    parts, pos = [], 0
    for size in CHUNKS:
        parts.append(x[:, pos : pos + size])
        pos += size
    parts.append(x[:, pos:])
    assert sum(p.shape[1] for p in parts) == x.shape[1]
    return parts


def decode(data: bytes, fmt: str, channels: int) -> tuple[np.ndarray, int]:
    raw = RawPCM(RATE, channels) if fmt == "pcm" else None
    return decode_audio(data, max_seconds=30, raw=raw)


def stream(fmt: str, x: np.ndarray, rate: int = RATE) -> tuple[bytes, bytes]:
    """(bytes returned by the writes, bytes returned by close)."""
    enc = StreamEncoder(fmt, rate, x.shape[0])
    before = b"".join(enc.write(part) for part in split(x))
    return before, enc.close()


def test_content_types() -> None:
    assert CONTENT_TYPES == {
        "mp3": "audio/mpeg",
        "opus": "audio/ogg; codecs=opus",
        "aac": "audio/aac",
        "flac": "audio/flac",
        "wav": "audio/wav",
        "pcm": "audio/pcm",
    }
    assert available_formats() == sorted(CONTENT_TYPES)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(fmt: str, channels: int, streamed: bool) -> None:
    x = sine(SECONDS, RATE, channels)
    if streamed:
        before, after = stream(fmt, x)
        data = before + after
        # incremental: most of the file came out before close()
        assert len(before) >= 0.5 * len(data), (len(before), len(data))
    else:
        data = encode_audio(x, RATE, fmt)

    y, rate = decode(data, fmt, channels)
    assert y.dtype == np.float32
    assert y.shape[0] == channels
    assert rate == (48000 if fmt == "opus" else RATE)

    if fmt in EXACT:
        assert y.shape[1] == x.shape[1]
        np.testing.assert_allclose(y, x, atol=1.5 / 32768)  # 16-bit quantization only
    else:
        lo, hi = TOLERANCE[(fmt, streamed)]
        delta = y.shape[1] / rate - SECONDS
        assert lo <= delta <= hi, f"{fmt}: decoded {delta * 1000:+.1f} ms vs input"

    for c in range(channels):
        assert abs(dominant_freq(y[c], rate) - TONES[c]) <= 3.0, f"channel {c}"
        assert 0.3 < float(np.max(np.abs(y[c]))) < 0.7  # level preserved (input peak 0.5)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_emits_bytes_before_close(fmt: str) -> None:
    enc = StreamEncoder(fmt, RATE, 1)
    first = enc.write(np.zeros((1, 0), dtype=np.float32))  # header at most
    out = [enc.write(part) for part in np.split(sine(1.0, RATE), 10, axis=1)]
    tail = enc.close()
    emitted = sum(len(b) for b in out)
    assert emitted > len(first)
    # audio bytes came out during the stream, not only the header: half the writes produced output
    assert sum(1 for b in out if b) >= 5
    assert emitted >= len(tail)


def test_stream_signatures() -> None:
    x = sine(0.5, RATE)
    starts = {fmt: b"".join(stream(fmt, x)) for fmt in FORMATS}
    assert starts["opus"].startswith(b"OggS")
    assert b"OpusHead" in starts["opus"][:64]
    assert starts["flac"].startswith(b"fLaC")
    mp3 = starts["mp3"]
    assert mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0  # MPEG frame sync, no ID3 tag
    aac = starts["aac"]
    assert aac[0] == 0xFF and aac[1] & 0xF6 == 0xF0  # ADTS sync word, layer 0
    assert len(starts["pcm"]) == 2 * x.shape[1]


def test_wav_headers() -> None:
    x = sine(0.25, RATE, 2)
    whole = encode_audio(x, RATE, "wav")
    streamed = b"".join(stream("wav", x))
    n_bytes = x.shape[1] * 2 * 2
    assert whole[:4] == b"RIFF" and whole[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", whole[4:8])[0] == 36 + n_bytes
    assert struct.unpack("<I", whole[40:44])[0] == n_bytes
    channels, rate = struct.unpack("<HI", whole[22:28])
    assert (channels, rate) == (2, RATE)
    # a stream does not know its length
    assert struct.unpack("<I", streamed[4:8])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", streamed[40:44])[0] == 0xFFFFFFFF
    assert streamed[44:] == whole[44:]


def test_pcm_is_raw_s16le_interleaved_and_clipped() -> None:
    x = np.array([[0.0, 0.5, 1.5, -2.0, np.nan], [-0.5, 1.0, -1.0, 0.25, 0.0]], dtype=np.float32)
    data = encode_audio(x, RATE, "pcm")
    got = np.frombuffer(data, dtype="<i2").reshape(-1, 2).T
    expected = np.array([[0, 16384, 32767, -32767, 0], [-16384, 32767, -32767, 8192, 0]])
    np.testing.assert_array_equal(got, expected)


def _s16_before(samples: np.ndarray) -> bytes:
    """The int16 conversion as it was before the one-buffer ``_prepare`` (copy, nan_to_num, clip,
    scale, rint, interleave): the encoders must stay byte-for-byte equal to it."""
    x = np.asarray(samples)
    x = x[None, :] if x.ndim == 1 else x
    x = np.array(x, dtype=np.float32, order="C", copy=True)
    np.nan_to_num(x, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    np.clip(x, -1.0, 1.0, out=x)
    return np.ascontiguousarray(np.rint(x * 32767.0).astype("<i2").T).tobytes()


def _awkward(channels: int) -> list[np.ndarray]:
    rng = np.random.default_rng(channels)
    x = (rng.standard_normal((channels, 4001)) * 0.7).astype(np.float32)
    x[:, ::7] = np.nan
    x[:, 1::11] = np.inf
    x[:, 2::13] = -np.inf
    x[:, 3::17] = 3.0
    x[:, 4::19] = 32767.0 / 32768.0  # rounds half-way cases the same way
    return [x, x.astype(np.float64), x[:, ::2], np.asfortranarray(x), (x * 2).astype(np.float16)]


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_wav_and_pcm_bytes_equal_the_previous_conversion(channels: int) -> None:
    for x in _awkward(channels):
        before = x.copy()
        expected = _s16_before(x)
        assert encode_audio(x, RATE, "pcm") == expected
        assert encode_audio(x, RATE, "wav")[44:] == expected
        enc = StreamEncoder("wav", RATE, channels)
        assert enc.write(x)[44:] + enc.write(x) + enc.close() == expected + expected
        np.testing.assert_array_equal(x, before)  # the caller's samples are never written to
    mono = _awkward(1)[0]
    assert encode_audio(mono[0], RATE, "pcm") == _s16_before(mono[0])  # 1-D is mono


def test_flac_samples_equal_the_previous_conversion() -> None:
    x = _awkward(2)[0]
    y, _ = decode(encode_audio(x, RATE, "flac"), "flac", 2)
    got = np.rint(y * 32768.0).astype("<i2")
    want = np.frombuffer(_s16_before(x), dtype="<i2").reshape(-1, 2).T
    np.testing.assert_array_equal(got, want)


def test_lossy_formats_clip_out_of_range_input() -> None:
    x = sine(0.5, RATE) * 4.0  # peaks at 2.0: must be clipped, not wrapped
    y, _ = decode(encode_audio(x, RATE, "flac"), "flac", 1)
    assert float(np.max(y)) <= 1.0 and float(np.max(y)) > 0.99
    assert float(np.min(y)) >= -1.0 and float(np.min(y)) < -0.99


def test_pcm_resamples_other_rates_to_24k() -> None:
    x = sine(1.0, 48000)
    data = encode_audio(x, 48000, "pcm")
    y, rate = decode(data, "pcm", 1)
    assert abs(y.shape[1] - 24000) <= 2
    assert abs(dominant_freq(y[0], rate) - TONES[0]) <= 3.0


@pytest.mark.parametrize(
    ("fmt", "rate", "decoded_rate"),
    [("opus", 22050, 48000), ("opus", 16000, 48000), ("aac", 23000, 24000), ("mp3", 22050, 22050)],
)
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_other_input_rates(fmt: str, rate: int, decoded_rate: int, streamed: bool) -> None:
    x = sine(1.0, rate)
    data = b"".join(stream(fmt, x, rate)) if streamed else encode_audio(x, rate, fmt)
    y, got_rate = decode_audio(data, max_seconds=30)
    assert got_rate == decoded_rate
    assert abs(y.shape[1] / got_rate - 1.0) <= 0.1
    assert abs(dominant_freq(y[0], got_rate) - TONES[0]) <= 3.0


def test_close_is_idempotent_and_write_after_close_fails() -> None:
    enc = StreamEncoder("mp3", RATE, 1)
    enc.write(sine(0.2, RATE))
    assert enc.close()
    assert enc.close() == b""
    with pytest.raises(ValueError):
        enc.write(sine(0.1, RATE))


def test_rejects_wrong_shape() -> None:
    enc = StreamEncoder("wav", RATE, 2)
    with pytest.raises(ValueError):
        enc.write(sine(0.1, RATE, 1))
    with pytest.raises(ValueError):
        StreamEncoder("mp3", RATE, 3)  # MP3 carries at most two channels


def test_unknown_format_is_400() -> None:
    with pytest.raises(InvalidRequestError) as info:
        StreamEncoder("ogg-vorbis", RATE, 1)
    assert info.value.status_code == 400
    assert info.value.param == "response_format"
    with pytest.raises(InvalidRequestError):
        encode_audio(sine(0.1, RATE), RATE, "nope")


def test_formats_are_the_schemas_six_and_read_only() -> None:
    from typing import get_args

    from api.schemas.speech import ResponseFormat

    assert set(OUTPUT_FORMATS) == set(get_args(ResponseFormat))
    assert all(f.name == name for name, f in OUTPUT_FORMATS.items())
    with pytest.raises(TypeError):
        OUTPUT_FORMATS["f32"] = OUTPUT_FORMATS["wav"]  # type: ignore[index]
    with pytest.raises(InvalidRequestError):
        get_format("f32")
    with pytest.raises(InvalidRequestError):
        StreamEncoder("f32", RATE, 1)


@pytest.mark.parametrize("fmt", ["aac", "flac"])
def test_concurrent_writes_to_one_encoder(fmt: str) -> None:
    """Writes from several threads are serialized: no samples lost, duplicated or corrupted."""
    chunk = sine(0.1, RATE)
    enc = StreamEncoder(fmt, RATE, 1)
    out: list[bytes] = []
    out_lock = threading.Lock()
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        for _ in range(10):
            data = enc.write(chunk)
            with out_lock:
                out.append(data)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = b"".join(out) + enc.close()
    y, rate = decode(data, fmt, 1)
    expected = 40 * chunk.shape[1]
    if fmt == "flac":
        assert y.shape[1] == expected
    else:
        assert 0 <= y.shape[1] - expected <= 2048
    assert abs(dominant_freq(y[0], rate) - TONES[0]) <= 3.0
