"""Decode uploaded audio from memory with PyAV (no ffmpeg binary).

Any container/codec FFmpeg can demux works: WAV (8/16/24/32-bit integer and float), MP3, FLAC,
Ogg Vorbis, Ogg Opus, M4A/AAC, ADTS AAC, WebM/Matroska Opus (browsers' ``MediaRecorder``), and raw
headerless s16le when the caller says so with :class:`RawPCM`.

Decoding is incremental and bounded, whatever a header or a frame claims. Before each decoded frame
is converted (and before anything is resampled) the *projected* output is checked: the samples so far
plus this frame's, at the source rate and at ``target_rate``, times the channels, against
``max_seconds`` and ``max_decoded_bytes`` (float32 bytes). Passing either stops decoding with
:class:`~api.errors.PayloadTooLargeError` (413), so a small compressed upload can never expand into a
huge buffer: memory per call is bounded by the limits (the kept frames plus one final concatenation),
not by the file. Sample rates outside ``MIN_RATE``–``MAX_RATE`` are refused before anything is
decoded or resampled, so ``soxr`` never sees a ratio above ``MAX_RATE / MIN_RATE``. Errors a client
sees never contain paths or FFmpeg internals:

* empty body, or a file with no samples → :class:`~api.errors.InvalidRequestError` (400);
* a stream that changes its sample rate, channel count or channel layout after the first frame
  (the "per-frame rate drop" decode bomb: a 48 kHz FLAC frame followed by frames claiming 1 Hz) →
  :class:`~api.errors.InvalidRequestError` (400, ``audio_format_change``);
* more than ``MAX_FRAMES_PER_SECOND`` packets + frames per second of decoded audio (a CPU bomb of
  tiny frames) → :class:`~api.errors.InvalidRequestError` (400, ``audio_too_fragmented``);
* not recognizable as audio, no audio stream, undecodable, a sample rate outside the supported range
  or too many channels → :class:`~api.errors.UnsupportedMediaError` (415).

A truncated or partly corrupt file yields the audio that could be decoded (as FFmpeg's CLI does);
it is an error only when nothing decodes at all.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import soxr

from api.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaError

log = logging.getLogger(__name__)

#: Most channels accepted (7.1).
MAX_CHANNELS = 8
#: Decode errors tolerated (packets skipped) before the file is given up as corrupt.
MAX_PACKET_ERRORS = 50
#: Lowest and highest sample rates accepted (Hz), in a header, a frame or ``target_rate``.
MIN_RATE = 1_000
MAX_RATE = 384_000
#: Most samples (per channel) one decoded frame may hold; real codecs stay far below (FLAC: 65535).
MAX_FRAME_SAMPLES = 1 << 20
#: Packets + frames (each counted) allowed per second of decoded audio, after ``FRAME_GRACE`` of them.
#: Each costs tens of microseconds whatever it holds, so a file of tiny frames (16-sample FLAC frames
#: are ~11 bytes) would otherwise burn a minute of CPU inside the sample limits. 1000/s leaves room
#: for the smallest real frames (Opus' 2.5 ms: 400 packets + 400 frames a second) and for WAV's
#: 4096-byte packets.
MAX_FRAMES_PER_SECOND = 1_000
FRAME_GRACE = 2_000

_AV_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, ValueError, OSError, EOFError, IndexError)

_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


@dataclass(frozen=True)
class RawPCM:
    """Describes headerless signed 16-bit little-endian PCM (OpenAI's ``pcm``: 24 kHz mono)."""

    sample_rate: int = 24000
    channels: int = 1


def _unsupported(detail: str) -> UnsupportedMediaError:
    return UnsupportedMediaError(detail, code="unsupported_audio")


def _frame_to_float(frame: av.AudioFrame, channels: int) -> np.ndarray:
    """A decoded frame as float32 ``(channels, n)`` in [-1, 1]."""
    fmt = frame.format
    name = fmt.name.rstrip("p")
    raw = frame.to_ndarray()
    x = raw.reshape(channels, -1) if fmt.is_planar else raw.reshape(-1, channels).T
    if name in ("flt", "dbl"):
        out = x.astype(np.float32)
        np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    elif name == "u8":
        out = (x.astype(np.float32) - 128.0) / 128.0
    elif name in _SCALE:
        out = (x.astype(np.float64) / _SCALE[name]).astype(np.float32)
    else:  # pragma: no cover - FFmpeg has no other sample formats
        raise _unsupported("The audio uses an unsupported sample format.")
    np.clip(out, -1.0, 1.0, out=out)
    return out


def _rate_ok(rate: int) -> bool:
    return MIN_RATE <= rate <= MAX_RATE


def _bad_rate(rate: int) -> UnsupportedMediaError:
    return _unsupported(
        f"The audio's sample rate ({rate} Hz) is outside the supported range ({MIN_RATE}-{MAX_RATE} Hz)."
    )


def _format_change(what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"The audio changes its {what} midway; a stream must keep one format throughout.",
        code="audio_format_change",
    )


def _open(data: bytes, raw: RawPCM | None) -> Any:
    kwargs: dict[str, Any] = {}
    if raw is not None:
        if not _rate_ok(raw.sample_rate) or not 1 <= raw.channels <= MAX_CHANNELS:
            raise InvalidRequestError("Invalid raw PCM parameters.")
        if len(data) % (2 * raw.channels):
            raise InvalidRequestError("Raw PCM data is not a whole number of 16-bit sample frames.")
        kwargs = {
            "format": "s16le",
            "options": {"sample_rate": str(raw.sample_rate), "ch_layout": f"{raw.channels}c"},
        }
    try:
        return av.open(io.BytesIO(data), mode="r", **kwargs)
    except _AV_ERRORS as exc:
        log.debug("audio open failed: %r", exc)
        raise _unsupported("The file could not be read as audio: unrecognized or corrupt format.") from None


def decode_audio(
    data: bytes,
    *,
    max_seconds: float,
    max_decoded_bytes: int | None = None,
    target_rate: int | None = None,
    mono: bool = False,
    raw: RawPCM | None = None,
) -> tuple[np.ndarray, int]:
    """Decode ``data`` to float32 ``(channels, n)`` in [-1, 1] and its sample rate.

    ``target_rate`` resamples (soxr, high quality); ``mono`` averages the channels. The
    ``max_seconds``/``max_decoded_bytes`` limits are checked frame by frame while decoding, on the
    projected output (at the source rate and at ``target_rate``) before each frame is converted.
    """
    if max_seconds <= 0:
        raise ValueError("max_seconds must be positive")
    if target_rate is not None and not _rate_ok(target_rate):
        raise ValueError(f"target_rate must be within {MIN_RATE}-{MAX_RATE} Hz")
    if max_decoded_bytes is not None and max_decoded_bytes <= 0:
        raise ValueError("max_decoded_bytes must be positive")
    if not data:
        raise InvalidRequestError("The audio file is empty.", code="empty_audio")

    container = _open(bytes(data), raw)
    try:
        samples, rate = _decode_stream(
            container, _Limits(max_seconds, max_decoded_bytes, target_rate, 1 if mono else None)
        )
    finally:
        container.close()

    if mono and samples.shape[0] > 1:
        samples = samples.mean(axis=0, keepdims=True, dtype=np.float32)
    if target_rate is not None and target_rate != rate:
        samples = _resample(samples, rate, target_rate)  # the size was checked while decoding
        rate = target_rate
    return samples, rate


@dataclass(frozen=True)
class _Limits:
    """The running limits of one decode: ``out_channels`` is 1 when downmixing, else the source's."""

    max_seconds: float
    max_bytes: int | None
    target_rate: int | None
    out_channels: int | None

    def check(self, total: int, rate: int, channels: int) -> None:
        """Refuse (413) before ``total`` samples per channel at ``rate`` Hz are converted/resampled."""
        if total > self.max_seconds * rate:
            raise _too_large_seconds(self.max_seconds)
        if self.max_bytes is None:
            return
        if total * channels * 4 > self.max_bytes:  # the float32 frames kept while decoding
            raise _too_large_bytes(self.max_bytes)
        if self.target_rate is not None and self.target_rate != rate:
            out = -(-total * self.target_rate // rate)  # soxr's output length, rounded up
            if out * (self.out_channels or channels) * 4 > self.max_bytes:
                raise _too_large_bytes(self.max_bytes)


def _too_large_seconds(max_seconds: float) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The audio is longer than the {max_seconds:g} second limit.", code="audio_too_long"
    )


def _fragmented() -> InvalidRequestError:
    return InvalidRequestError(
        "The audio is split into too many tiny frames; the file looks corrupt or crafted.",
        code="audio_too_fragmented",
    )


def _too_large_bytes(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The decoded audio is larger than the {limit} byte limit.", code="audio_too_large"
    )


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if x.shape[1] == 0:
        return x
    y = soxr.resample(np.ascontiguousarray(x.T), rate, target, quality="HQ")
    out = np.ascontiguousarray(np.asarray(y, dtype=np.float32).reshape(-1, x.shape[0]).T)
    np.clip(out, -1.0, 1.0, out=out)
    return out


def _decode_stream(container: Any, limits: _Limits) -> tuple[np.ndarray, int]:
    """Decode the first audio stream frame by frame, enforcing the limits before each conversion."""
    if not container.streams.audio:
        raise _unsupported("The file contains no audio stream.")
    stream = container.streams.audio[0]
    if stream.codec_context is None:  # FFmpeg could not set up a decoder (e.g. a header claims 0 channels)
        raise _unsupported("The audio could not be decoded: corrupt or unsupported encoding.")
    declared = int(stream.codec_context.sample_rate or 0)
    if declared and not _rate_ok(declared):  # a header's claim: refuse before decoding anything
        raise _bad_rate(declared)

    chunks: list[np.ndarray] = []
    rate = 0
    channels = 0
    layout = ""
    total = 0
    errors = 0
    work = 0  # packets + frames handled: each costs time whatever it holds

    packets = container.demux(stream)
    while True:
        work += 1
        if work > FRAME_GRACE and work > FRAME_GRACE + MAX_FRAMES_PER_SECOND * total / (rate or MAX_RATE):
            raise _fragmented()
        try:
            packet = next(packets)
        except StopIteration:
            break
        except _AV_ERRORS as exc:  # truncated/corrupt container: keep what decoded
            log.debug("audio demux stopped: %r", exc)
            errors += 1
            packet = None  # flush the decoder
        try:
            frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
        except _AV_ERRORS as exc:
            errors += 1
            log.debug("audio packet skipped: %r", exc)
            if errors > MAX_PACKET_ERRORS:
                break
            continue
        for frame in frames:
            work += 1
            n = int(frame.samples)
            if n == 0:
                continue
            frame_channels = int(frame.layout.nb_channels)
            frame_layout = str(frame.layout.name)
            frame_rate = int(frame.rate or declared)
            if not rate:
                if frame_rate <= 0:
                    raise _unsupported("The audio has no valid sample rate.")
                if not _rate_ok(frame_rate):
                    raise _bad_rate(frame_rate)
                if not 1 <= frame_channels <= MAX_CHANNELS:
                    raise _unsupported(f"The audio has an unsupported channel count (max {MAX_CHANNELS}).")
                rate, channels, layout = frame_rate, frame_channels, frame_layout
            elif frame_rate != rate:  # never resampled: a 1 Hz frame after 48 kHz ones is a bomb
                raise _format_change("sample rate")
            elif frame_channels != channels:
                raise _format_change("channel count")
            elif frame_layout != layout:
                raise _format_change("channel layout")
            if n > MAX_FRAME_SAMPLES:
                raise _unsupported("The audio has an oversized frame; the file looks corrupt.")
            limits.check(total + n, rate, channels)  # before converting (allocating) this frame
            x = _frame_to_float(frame, channels)
            total += x.shape[1]
            chunks.append(x)
        if packet is None:
            break

    if not rate:
        if errors:
            raise _unsupported("The audio could not be decoded: corrupt or unsupported encoding.")
        raise InvalidRequestError("The audio file contains no audio samples.", code="empty_audio")
    return np.ascontiguousarray(np.concatenate(chunks, axis=1)), rate
