"""Decoder: common formats, limits enforced while decoding, clean errors on bad input."""

from __future__ import annotations

import io
import os
from typing import Any

import av
import numpy as np
import pytest

import api.audio.decode as decode_mod
from api.audio.decode import RawPCM, decode_audio
from api.audio.encode import encode_audio
from api.errors import APIError, InvalidRequestError, PayloadTooLargeError, UnsupportedMediaError
from tests.audio import TONES, dominant_freq, sine

RATE = 24000
_LAYOUT = {1: "mono", 2: "stereo"}


class _Pipe:
    """A write-only, non-seekable output (how a browser's MediaRecorder produces WebM)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> int:
        self.data += b
        return len(b)


def pyav_encode(
    x: np.ndarray,
    rate: int,
    container: str,
    codec: str,
    sample_fmt: str,
    *,
    seekable: bool = True,
    codec_options: dict[str, str] | None = None,
) -> bytes:
    """Encode float ``(channels, n)`` with PyAV directly (independent of our encoder)."""
    channels = x.shape[0]
    sink: Any = io.BytesIO() if seekable else _Pipe()
    out = av.open(sink, mode="w", format=container)
    stream: Any = out.add_stream(codec, rate=rate, layout=_LAYOUT[channels], options=codec_options or {})
    stream.codec_context.format = sample_fmt
    frame_size = stream.codec_context.frame_size or 1024
    kind = sample_fmt.rstrip("p")
    pts = 0
    for start in range(0, x.shape[1], frame_size):
        block = x[:, start : start + frame_size]
        if kind == "u8":
            arr: np.ndarray = np.rint(block * 127 + 128).astype(np.uint8)
        elif kind == "s16":
            arr = np.rint(block * 32767).astype(np.int16)
        elif kind == "s32":
            arr = np.rint(block * 2147483647).astype(np.int32)
        elif kind == "dbl":
            arr = block.astype(np.float64)
        else:
            arr = block.astype(np.float32)
        if not sample_fmt.endswith("p"):
            arr = np.ascontiguousarray(arr.T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(arr, format=sample_fmt, layout=_LAYOUT[channels])
        frame.rate = rate
        frame.pts = pts
        pts += block.shape[1]
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
    out.close()
    return sink.getvalue() if seekable else bytes(sink.data)


def check_tone(y: np.ndarray, rate: int) -> None:
    for c in range(y.shape[0]):
        assert abs(dominant_freq(y[c], rate) - TONES[c]) <= 3.0, f"channel {c}"


# --------------------------------------------------------------------------- formats

# (container, codec, sample format, quantization step) for WAV inputs
WAV_VARIANTS = [
    ("pcm_u8", "u8", 1 / 128),
    ("pcm_s16le", "s16", 1 / 32768),
    ("pcm_s24le", "s32", 1 / 2**23),
    ("pcm_s32le", "s32", 1 / 2**31),
    ("pcm_f32le", "flt", 1e-7),
    ("pcm_f64le", "dbl", 1e-7),
]


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(("codec", "sample_fmt", "step"), WAV_VARIANTS, ids=[v[0] for v in WAV_VARIANTS])
def test_wav_bit_depths(codec: str, sample_fmt: str, step: float, channels: int) -> None:
    x = sine(0.5, RATE, channels)
    data = pyav_encode(x, RATE, "wav", codec, sample_fmt)
    y, rate = decode_audio(data, max_seconds=10)
    assert (y.dtype, y.shape, rate) == (np.float32, x.shape, RATE)
    np.testing.assert_allclose(y, x, atol=1.5 * step + 1e-6)


# (name, container, codec, sample format, rate, seekable, codec options, duration tolerance s)
COMPRESSED = [
    ("mp3-44k-id3", "mp3", "libmp3lame", "fltp", 44100, True, None, 0.08),
    ("flac", "flac", "flac", "s16", RATE, True, None, 0.0),
    ("ogg-vorbis", "ogg", "vorbis", "fltp", RATE, True, {"strict": "experimental"}, 0.08),
    ("ogg-opus", "ogg", "libopus", "flt", 48000, True, None, 0.02),
    ("m4a-aac", "ipod", "aac", "fltp", RATE, True, None, 0.09),
    ("adts-aac", "adts", "aac", "fltp", RATE, True, None, 0.09),
    ("webm-opus-mediarecorder", "webm", "libopus", "flt", 48000, False, None, 0.02),
    ("mkv-flac", "matroska", "flac", "s16", 48000, True, None, 0.0),
]


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(
    ("container", "codec", "sample_fmt", "rate", "seekable", "options", "tol"),
    [c[1:] for c in COMPRESSED],
    ids=[c[0] for c in COMPRESSED],
)
def test_compressed_formats(
    container: str,
    codec: str,
    sample_fmt: str,
    rate: int,
    seekable: bool,
    options: dict[str, str] | None,
    tol: float,
    channels: int,
) -> None:
    if codec == "vorbis" and channels == 1:
        pytest.skip("FFmpeg's built-in Vorbis encoder writes stereo only (no libvorbis here)")
    x = sine(1.0, rate, channels)
    data = pyav_encode(x, rate, container, codec, sample_fmt, seekable=seekable, codec_options=options)
    y, got_rate = decode_audio(data, max_seconds=10)
    assert y.dtype == np.float32 and y.shape[0] == channels
    assert got_rate == rate
    assert abs(y.shape[1] / got_rate - 1.0) <= tol + 1e-9
    assert float(np.max(np.abs(y))) <= 1.0
    check_tone(y, got_rate)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_our_encoder_outputs_decode(fmt: str) -> None:
    y, rate = decode_audio(encode_audio(sine(1.0, RATE, 2), RATE, fmt), max_seconds=10)
    assert y.shape[0] == 2 and rate in (RATE, 48000)
    check_tone(y, rate)


def test_raw_pcm_needs_and_uses_description() -> None:
    x = sine(0.5, RATE, 2)
    data = encode_audio(x, RATE, "pcm")
    y, rate = decode_audio(data, max_seconds=10, raw=RawPCM(RATE, 2))
    assert rate == RATE and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=2 / 32768)
    with pytest.raises(InvalidRequestError):
        decode_audio(data[:-1], max_seconds=10, raw=RawPCM(RATE, 2))  # half a sample frame


# --------------------------------------------------------------------------- options


def test_target_rate_resamples() -> None:
    data = encode_audio(sine(1.0, RATE, 2), RATE, "wav")
    y, rate = decode_audio(data, max_seconds=10, target_rate=16000)
    assert rate == 16000 and y.shape[0] == 2
    assert abs(y.shape[1] - 16000) <= 2
    check_tone(y, rate)
    y, rate = decode_audio(data, max_seconds=10, target_rate=RATE)  # same rate: untouched
    assert rate == RATE and y.shape[1] == RATE


def test_mono_downmix() -> None:
    x = sine(0.5, RATE, 2)
    y, _ = decode_audio(encode_audio(x, RATE, "wav"), max_seconds=10, mono=True)
    assert y.shape == (1, x.shape[1])
    np.testing.assert_allclose(y[0], x.mean(axis=0), atol=2 / 32768)


# --------------------------------------------------------------------------- limits


def test_too_long_is_413() -> None:
    data = encode_audio(sine(3.0, RATE), RATE, "mp3")
    with pytest.raises(PayloadTooLargeError) as info:
        decode_audio(data, max_seconds=1.0)
    assert info.value.status_code == 413
    assert "1 second" in info.value.message


def test_exactly_at_limit_passes() -> None:
    y, _ = decode_audio(encode_audio(sine(1.0, RATE), RATE, "wav"), max_seconds=1.0)
    assert y.shape[1] == RATE


def test_limit_stops_decoding_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long file is refused after about max_seconds of decoding, not after decoding it all: the
    frame that would cross the limit is never even converted."""
    data = encode_audio(np.zeros((1, 120 * RATE), dtype=np.float32), RATE, "flac")  # 2 min, tiny
    seen: list[int] = []
    real = decode_mod._frame_to_float

    def counting(frame: av.AudioFrame, channels: int) -> np.ndarray:
        seen.append(frame.samples)
        return real(frame, channels)

    monkeypatch.setattr(decode_mod, "_frame_to_float", counting)
    with pytest.raises(PayloadTooLargeError):
        decode_audio(data, max_seconds=1.0)
    assert RATE // 2 < sum(seen) <= RATE  # stopped at the frame that would cross the limit


def test_decoded_bytes_cap() -> None:
    data = encode_audio(sine(1.0, RATE), RATE, "opus")  # decodes at 48 kHz mono: 192 000 bytes
    y, _ = decode_audio(data, max_seconds=10, max_decoded_bytes=200_000)
    assert y.nbytes <= 200_000
    with pytest.raises(PayloadTooLargeError) as info:
        decode_audio(data, max_seconds=10, max_decoded_bytes=100_000)
    assert info.value.status_code == 413
    # the cap also holds for the resampled result
    wav = encode_audio(sine(1.0, RATE), RATE, "wav")  # 96 000 bytes decoded
    decode_audio(wav, max_seconds=10, max_decoded_bytes=100_000)
    with pytest.raises(PayloadTooLargeError):
        decode_audio(wav, max_seconds=10, max_decoded_bytes=100_000, target_rate=48000)


# --------------------------------------------------------------------------- bad input


def assert_clean(err: APIError) -> None:
    """Client-facing text: no paths, errno values or FFmpeg internals."""
    for bad in ("/", "\\", "Errno", "<none>", "av.", "ffmpeg", "avformat"):
        assert bad not in err.message, err.message


def test_empty_is_400() -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_audio(b"", max_seconds=10)
    assert info.value.status_code == 400
    assert_clean(info.value)


@pytest.mark.parametrize(
    "data",
    [
        os.urandom(0) + bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8)),
        b"this is not audio at all\n" * 200,
        b'{"model": "tts-1", "input": "hi"}',
        b"RIFF\x10\x00\x00\x00WAVEfmt ",
        b"\x00" * 4096,
    ],
    ids=["random", "text", "json", "wav-header-only", "zeros"],
)
def test_garbage_is_415_or_400(data: bytes) -> None:
    with pytest.raises((UnsupportedMediaError, InvalidRequestError)) as info:
        decode_audio(data, max_seconds=10)
    assert info.value.status_code in (400, 415)
    assert_clean(info.value)


def test_random_bytes_are_415() -> None:
    data = bytes(np.random.default_rng(7).integers(0, 256, 50_000, dtype=np.uint8))
    with pytest.raises(UnsupportedMediaError) as info:
        decode_audio(data, max_seconds=10)
    assert info.value.status_code == 415


def test_file_without_audio_is_415() -> None:
    sink = io.BytesIO()
    out = av.open(sink, mode="w", format="matroska")
    stream: Any = out.add_stream("ffv1", rate=5)
    stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
    for i in range(3):
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
        frame.pts = i
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
    out.close()
    with pytest.raises(UnsupportedMediaError) as info:
        decode_audio(sink.getvalue(), max_seconds=10)
    assert "no audio" in info.value.message


@pytest.mark.parametrize("keep", [0.5, 0.37, 0.05, 300, 17])
def test_truncated_mp3_decodes_what_is_there(keep: float) -> None:
    data = encode_audio(sine(2.0, RATE), RATE, "mp3")
    cut = data[: int(len(data) * keep)] if keep < 1 else data[: int(keep)]
    try:
        y, rate = decode_audio(cut, max_seconds=10)
    except (UnsupportedMediaError, InvalidRequestError) as err:  # nothing decodable: a clean error
        assert_clean(err)
        assert len(cut) < 1000, "a substantial prefix must decode"
        return
    assert rate == RATE
    seconds = y.shape[1] / rate
    if keep < 1:
        assert abs(seconds - 2.0 * keep) <= 0.15
        check_tone(y, rate)


@pytest.mark.parametrize("fmt", ["opus", "aac", "flac", "wav"])
def test_truncated_other_formats_never_crash(fmt: str) -> None:
    data = encode_audio(sine(2.0, RATE), RATE, fmt)
    try:
        y, rate = decode_audio(data[: len(data) // 2], max_seconds=10)
    except (UnsupportedMediaError, InvalidRequestError) as err:
        assert_clean(err)
        return
    assert 0.5 <= y.shape[1] / rate <= 1.2


def test_corrupt_middle_of_mp3() -> None:
    data = bytearray(encode_audio(sine(2.0, RATE), RATE, "mp3"))
    mid = len(data) // 2
    data[mid : mid + 1500] = bytes(np.random.default_rng(3).integers(0, 256, 1500, dtype=np.uint8))
    y, rate = decode_audio(bytes(data), max_seconds=10)
    assert 1.2 <= y.shape[1] / rate <= 2.2
    assert float(np.max(np.abs(y))) <= 1.0
