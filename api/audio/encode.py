"""Encoders for OpenAI's six speech formats, whole-file and streaming, in-process with PyAV.

Input follows the project convention (:mod:`api.engines.base`): float32 ``(channels, samples)``
in ``[-1, 1]`` (a 1-D array is taken as mono). Samples are clipped to ``[-1, 1]`` before any
integer conversion.

=======  ============================  ===========================================================
format   content type                  bytes
=======  ============================  ===========================================================
mp3      ``audio/mpeg``                MPEG audio frames (libmp3lame), no ID3 tag; whole files carry
                                       a Xing/LAME header so decoders trim the encoder delay
opus     ``audio/ogg; codecs=opus``    Ogg Opus (RFC 7845). The body is an Ogg file, so we send the
                                       registered Ogg type rather than OpenAI's ``audio/opus`` (which
                                       RFC 7587 defines for RTP payloads); browsers play it directly
aac      ``audio/aac``                 AAC-LC in ADTS frames
flac     ``audio/flac``                native FLAC, 16-bit
wav      ``audio/wav``                 RIFF/WAVE, 16-bit PCM
pcm      ``audio/pcm``                 raw 24 kHz signed 16-bit little-endian, interleaved, no header
=======  ============================  ===========================================================

Streaming (:class:`StreamEncoder`): every format emits bytes as chunks arrive. Codecs hold back a
little audio (mp3/aac/opus frame and look-ahead, an Ogg page of at most 100 ms), which comes out on
the next write or at ``close()``. A streamed WAV has ``0xFFFFFFFF`` in its RIFF and data sizes
(length unknown); a streamed FLAC's STREAMINFO has total-samples 0 (unknown) and no MD5; a streamed
MP3 has no Xing/LAME header, so decoders do not trim the encoder delay (about 50 ms of leading
silence at 24 kHz). ``encode_audio`` writes to a seekable buffer instead, so those headers are exact.

Sample rates: wav/flac keep the input rate; pcm is always 24 kHz (other input rates are resampled);
opus encodes at 8/12/16/24/48 kHz as given and resamples anything else to 48 kHz (Opus decoders
output 48 kHz regardless); mp3/aac keep the rate when the codec supports it, else resample to the
nearest supported one. Resampling uses soxr.

Formats are looked up by name in the plain, read-only mapping :data:`FORMATS`; one protocol per
capability: :class:`IncrementalEncoder` (a streaming encoder instance), :class:`StreamEncoderFactory`
(makes one) and :class:`FileEncoder` (whole file). :class:`StreamEncoder` is the thread-safe
front every caller uses.
"""

from __future__ import annotations

import io
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import av
import numpy as np
import soxr

from api.errors import InvalidRequestError

#: OpenAI's ``pcm`` format: raw 24 kHz 16-bit little-endian.
PCM_SAMPLE_RATE = 24000
MAX_CHANNELS = 8
#: Longest Ogg page the opus stream holds back (microseconds).
OGG_PAGE_DURATION_US = 100_000

_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


# --------------------------------------------------------------------------- protocols / formats


@runtime_checkable
class IncrementalEncoder(Protocol):
    """Streaming capability: feed chunks, get the bytes produced so far; ``close`` gives the rest."""

    def write(self, samples: np.ndarray) -> bytes:
        """Encode float32 ``(channels, n)`` samples; return whatever bytes are ready (maybe none)."""
        ...

    def close(self) -> bytes:
        """Flush the codec and container; return the remaining bytes."""
        ...


class StreamEncoderFactory(Protocol):
    """Makes a streaming encoder for one format."""

    def __call__(self, sample_rate: int, channels: int) -> IncrementalEncoder: ...


class FileEncoder(Protocol):
    """Whole-file capability: all samples in, one complete file out."""

    def __call__(self, samples: np.ndarray, sample_rate: int) -> bytes: ...


@dataclass(frozen=True)
class AudioFormat:
    """An output format. ``file`` is optional: without it, whole files are streamed."""

    name: str
    content_type: str
    stream: StreamEncoderFactory
    file: FileEncoder | None = None
    #: False when ``stream`` can only buffer to the end (documented by the encoder).
    incremental: bool = True


def get_format(name: str) -> AudioFormat:
    """The format ``name``; unknown names are a 400 on ``response_format``."""
    fmt = FORMATS.get(name)
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise InvalidRequestError(
            f"Unsupported response_format {name!r}; supported: {known}.",
            param="response_format",
            code="invalid_value",
        )
    return fmt


def available_formats() -> list[str]:
    """Names of the output formats."""
    return sorted(FORMATS)


# --------------------------------------------------------------------------- sample helpers


def _check_params(sample_rate: int, channels: int) -> None:
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    if not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"channels must be 1..{MAX_CHANNELS}, got {channels!r}")


def _prepare(samples: np.ndarray, channels: int) -> np.ndarray:
    """float32 C-contiguous ``(channels, n)``, finite and clipped to [-1, 1]."""
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] != channels:
        raise ValueError(f"expected samples shaped ({channels}, n), got {x.shape}")
    # One new buffer, two passes: the clip writes the copy (±inf become ±1), then NaNs become 0
    # (the same values as nan_to_num then clip, a third of the time; the caller's array untouched).
    if x.dtype == np.float32:
        out = np.clip(x, -1.0, 1.0, out=np.empty(x.shape, dtype=np.float32))
    else:
        out = np.array(x, dtype=np.float32, order="C")
        np.clip(out, -1.0, 1.0, out=out)
    nan = np.isnan(out)
    if nan.any():
        out[nan] = 0.0
    return out


def _to_s16(x: np.ndarray) -> np.ndarray:
    """Clipped float ``(channels, n)`` → int16 ``(channels, n)`` (symmetric scale, rounded)."""
    y = x * 32767.0
    np.rint(y, out=y)
    return y.astype("<i2")


def _s16le_bytes(x: np.ndarray) -> bytes:
    """Interleaved little-endian int16 bytes of clipped float ``(channels, n)``."""
    s = _to_s16(x)
    return s.tobytes() if s.shape[0] == 1 else np.ascontiguousarray(s.T).tobytes()


class _Resampler:
    """Streaming soxr resampler over ``(channels, n)`` float32; a no-op when rates match."""

    def __init__(self, in_rate: int, out_rate: int, channels: int) -> None:
        self.channels = channels
        self._stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, channels, dtype="float32")
        )

    def process(self, x: np.ndarray, *, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return x
        y = self._stream.resample_chunk(np.ascontiguousarray(x.T), last=last)
        out = np.ascontiguousarray(np.asarray(y, dtype=np.float32).reshape(-1, self.channels).T)
        np.clip(out, -1.0, 1.0, out=out)
        return out

    def flush(self) -> np.ndarray:
        return self.process(np.zeros((self.channels, 0), dtype=np.float32), last=True)


# --------------------------------------------------------------------------- pcm / wav (numpy)


class PCMEncoder:
    """Raw s16le at 24 kHz, interleaved; resamples other input rates to 24 kHz."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        _check_params(sample_rate, channels)
        self.channels = channels
        self._resampler = _Resampler(sample_rate, PCM_SAMPLE_RATE, channels)

    def write(self, samples: np.ndarray) -> bytes:
        return _s16le_bytes(self._resampler.process(_prepare(samples, self.channels)))

    def close(self) -> bytes:
        return _s16le_bytes(self._resampler.flush())


_UNKNOWN_SIZE = 0xFFFFFFFF


def wav_header(sample_rate: int, channels: int, data_bytes: int | None) -> bytes:
    """A 44-byte 16-bit PCM WAVE header; ``data_bytes=None`` writes 0xFFFFFFFF sizes (streaming).

    Plain ``WAVE_FORMAT_PCM`` even above two channels (no speaker mask); FFmpeg and browsers read it.
    """
    block = channels * 2
    if data_bytes is None or data_bytes + 36 > _UNKNOWN_SIZE:
        riff_size = data_size = _UNKNOWN_SIZE
    else:
        riff_size, data_size = 36 + data_bytes, data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


class WAVStreamEncoder:
    """16-bit PCM WAVE; the header (sizes 0xFFFFFFFF: unknown length) comes with the first write."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        _check_params(sample_rate, channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self._header_sent = False

    def _header(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return wav_header(self.sample_rate, self.channels, None)

    def write(self, samples: np.ndarray) -> bytes:
        return self._header() + _s16le_bytes(_prepare(samples, self.channels))

    def close(self) -> bytes:
        return self._header()


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """A complete 16-bit PCM WAVE file with exact sizes."""
    x = np.asarray(samples)
    channels = 1 if x.ndim == 1 else int(x.shape[0])
    _check_params(sample_rate, channels)
    data = _s16le_bytes(_prepare(x, channels))
    return wav_header(sample_rate, channels, len(data)) + data


# --------------------------------------------------------------------------- PyAV codecs


class _Sink:
    """Write-only byte collector. No ``seek``: PyAV then treats the output as a pipe."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


class _SeekableSink(io.BytesIO):
    """Seekable output: muxers rewrite headers (Xing, STREAMINFO) at the end. Read only at close."""

    def take(self) -> bytes:
        return b""

    def result(self) -> bytes:
        return self.getvalue()


@dataclass(frozen=True)
class CodecSpec:
    """How to drive one PyAV codec + muxer."""

    container: str
    codec: str
    sample_format: str  # PyAV sample format name the codec accepts (e.g. "fltp", "flt", "s16")
    #: picks the encoding rate from the input rate
    rate: Callable[[int], int]
    #: bit rate for a channel count; None leaves the codec default (lossless codecs)
    bit_rate: Callable[[int], int] | None = None
    max_channels: int = MAX_CHANNELS
    container_options: dict[str, str] = field(default_factory=dict)
    codec_options: dict[str, str] = field(default_factory=dict)
    #: frame size when the codec does not fix one
    default_frame_size: int = 1024


def _nearest_rate(supported: tuple[int, ...]) -> Callable[[int], int]:
    def pick(rate: int) -> int:
        if rate in supported:
            return rate
        higher = [r for r in supported if r >= rate]
        return min(higher) if higher else max(supported)

    return pick


def _opus_rate(rate: int) -> int:
    return rate if rate in _OPUS_RATES else 48000


def _same_rate(rate: int) -> int:
    return rate


def _mp3_bit_rate(channels: int) -> int:
    return min(64000 * channels, 160000)


class AVStreamEncoder:
    """A PyAV codec + muxer fed in codec-sized frames; returns muxed bytes as they appear.

    With ``seekable=True`` the output goes to a seekable buffer and everything comes back from
    :meth:`close` (used for whole files so muxers can finalize their headers).
    """

    def __init__(self, spec: CodecSpec, sample_rate: int, channels: int, *, seekable: bool = False) -> None:
        _check_params(sample_rate, channels)
        if channels > spec.max_channels:
            raise ValueError(f"{spec.codec} supports at most {spec.max_channels} channels, got {channels}")
        self.spec = spec
        self.channels = channels
        self.rate = spec.rate(sample_rate)
        self._resampler = _Resampler(sample_rate, self.rate, channels)
        self._sink: _Sink | _SeekableSink = _SeekableSink() if seekable else _Sink()
        options = dict(spec.container_options)
        if not seekable:
            options["flush_packets"] = "1"  # hand every muxed packet to the sink at once
        layout = _LAYOUTS[channels]
        self._container = av.open(self._sink, mode="w", format=spec.container, container_options=options)
        try:
            stream = self._container.add_stream(
                spec.codec, rate=self.rate, layout=layout, options=dict(spec.codec_options)
            )
            if not isinstance(stream, av.audio.stream.AudioStream):  # pragma: no cover
                raise TypeError(f"{spec.codec} is not an audio codec")
            ctx = stream.codec_context
            ctx.format = spec.sample_format
            ctx.time_base = Fraction(1, self.rate)
            if spec.bit_rate is not None:
                ctx.bit_rate = spec.bit_rate(channels)
            self._container.start_encoding()
        except BaseException:
            self._container.close()
            raise
        self._stream: av.audio.stream.AudioStream = stream
        self._layout = layout
        self._planar = av.AudioFormat(spec.sample_format).is_planar
        self._integer = spec.sample_format.startswith("s16")
        self._frame_size = int(ctx.frame_size) or spec.default_frame_size
        self._pending = np.zeros((channels, 0), dtype=np.float32)
        self._pts = 0
        self._closed = False

    def _frame(self, block: np.ndarray) -> av.AudioFrame:
        data: np.ndarray = _to_s16(block) if self._integer else block
        if not self._planar:
            data = np.ascontiguousarray(data.T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format=self.spec.sample_format, layout=self._layout)
        frame.rate = self.rate
        frame.time_base = Fraction(1, self.rate)
        frame.pts = self._pts
        self._pts += block.shape[1]
        return frame

    def _encode(self, frame: av.AudioFrame | None) -> None:
        self._container.mux(self._stream.encode(frame))

    def _feed(self, x: np.ndarray, *, final: bool) -> None:
        if x.shape[1]:
            buf = np.concatenate([self._pending, x], axis=1) if self._pending.shape[1] else x
        else:
            buf = self._pending
        n = self._frame_size
        full = buf.shape[1] - buf.shape[1] % n
        for start in range(0, full, n):
            self._encode(self._frame(buf[:, start : start + n]))
        rest = buf[:, full:]
        if final and rest.shape[1]:
            self._encode(self._frame(np.ascontiguousarray(rest)))  # a short last frame is allowed
            rest = rest[:, :0]
        self._pending = np.ascontiguousarray(rest)

    def write(self, samples: np.ndarray) -> bytes:
        if self._closed:
            raise ValueError("encoder is closed")
        self._feed(self._resampler.process(_prepare(samples, self.channels)), final=False)
        return self._sink.take()

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        try:
            self._feed(self._resampler.flush(), final=True)
            self._encode(None)
        finally:
            self._container.close()
        if isinstance(self._sink, _SeekableSink):
            return self._sink.result()
        return self._sink.take()


def _av_factory(spec: CodecSpec) -> StreamEncoderFactory:
    def make(sample_rate: int, channels: int) -> IncrementalEncoder:
        return AVStreamEncoder(spec, sample_rate, channels)

    return make


def _av_file(spec: CodecSpec) -> FileEncoder:
    def encode(samples: np.ndarray, sample_rate: int) -> bytes:
        x = np.asarray(samples)
        channels = 1 if x.ndim == 1 else int(x.shape[0])
        enc = AVStreamEncoder(spec, sample_rate, channels, seekable=True)
        try:
            enc.write(x)
        finally:
            data = enc.close()
        return data

    return encode


MP3 = CodecSpec(
    container="mp3",
    codec="libmp3lame",
    sample_format="fltp",
    rate=_nearest_rate((8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),
    bit_rate=_mp3_bit_rate,
    max_channels=2,
    container_options={"id3v2_version": "0"},
)
OPUS = CodecSpec(
    container="ogg",
    codec="libopus",
    sample_format="flt",
    rate=_opus_rate,
    bit_rate=lambda channels: 32000 * channels,
    container_options={"page_duration": str(OGG_PAGE_DURATION_US)},
)
AAC = CodecSpec(
    container="adts",
    codec="aac",
    sample_format="fltp",
    rate=_nearest_rate((8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)),
    bit_rate=lambda channels: 64000 * channels,
)
FLAC = CodecSpec(
    container="flac",
    codec="flac",
    sample_format="s16",
    rate=_same_rate,
    container_options={"metadata_header_padding": "0"},
)


# --------------------------------------------------------------------------- public API


class StreamEncoder:
    """Thread-safe streaming encoder for one of :data:`FORMATS`.

    ``write`` returns the bytes ready so far (possibly ``b""``), ``close`` the rest; a second
    ``close`` returns ``b""`` and ``write`` after ``close`` raises ``ValueError``. Calls on one
    instance are serialized by a lock; codec work in PyAV, numpy and soxr runs without the GIL.
    """

    def __init__(self, fmt: str, sample_rate: int, channels: int) -> None:
        self.format = get_format(fmt)
        self.sample_rate = sample_rate
        self.channels = channels
        self.content_type = self.format.content_type
        self._lock = threading.Lock()
        self._closed = False
        self._impl = self.format.stream(sample_rate, channels)

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, samples: np.ndarray) -> bytes:
        """Encode a float32 ``(channels, n)`` chunk; return the bytes produced so far."""
        with self._lock:
            if self._closed:
                raise ValueError("encoder is closed")
            return self._impl.write(samples)

    def close(self) -> bytes:
        """Finish the stream; return the remaining bytes (idempotent)."""
        with self._lock:
            if self._closed:
                return b""
            self._closed = True
            return self._impl.close()

    def __enter__(self) -> StreamEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode float32 ``(channels, n)`` (or 1-D mono) samples as one complete file in ``fmt``."""
    spec = get_format(fmt)
    if spec.file is not None:
        return spec.file(samples, sample_rate)
    x = np.asarray(samples)
    enc = spec.stream(sample_rate, 1 if x.ndim == 1 else int(x.shape[0]))
    try:
        head = enc.write(x)
    finally:
        tail = enc.close()
    return head + tail


#: The output formats, by ``response_format`` name (the request schema fixes these six).
FORMATS: Mapping[str, AudioFormat] = MappingProxyType(
    {
        "mp3": AudioFormat("mp3", "audio/mpeg", _av_factory(MP3), _av_file(MP3)),
        "opus": AudioFormat("opus", "audio/ogg; codecs=opus", _av_factory(OPUS), _av_file(OPUS)),
        "aac": AudioFormat("aac", "audio/aac", _av_factory(AAC), _av_file(AAC)),
        "flac": AudioFormat("flac", "audio/flac", _av_factory(FLAC), _av_file(FLAC)),
        "wav": AudioFormat("wav", "audio/wav", WAVStreamEncoder, encode_wav),
        "pcm": AudioFormat("pcm", "audio/pcm", PCMEncoder),
    }
)
#: Response content type per format name.
CONTENT_TYPES: Mapping[str, str] = MappingProxyType({n: f.content_type for n, f in FORMATS.items()})
