"""Audio-side steps of ZipVoice generation: prompt preparation and output post-processing.

Prompt: decode -> (C, T) float32 -> resample to 24 kHz -> remove long/edge silences
(+ 200 ms trailing silence) -> RMS normalisation to 0.1 -> log-mel x ``feat_scale``.
Output: features / ``feat_scale`` -> vocoder -> clamp -> volume restore -> edge trim.

Silence handling reproduces the pydub-based reference exactly (int16 truncation,
millisecond-granular slicing that zero-pads up to a whole millisecond, integer RMS,
-50 dBFS thresholds), implemented here with numpy on int16 sample arrays.

Resampling uses soxr (VHQ). The reference uses torchaudio's windowed-sinc
``Resample`` (Hann, 6 zero crossings, rolloff 0.99); both are band-limited
resamplers but their filters differ, so non-24 kHz prompts give slightly different
samples (not covered by the golden data, whose prompts are all 24 kHz).
"""

from __future__ import annotations

import io
import itertools
import math
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import soxr

if TYPE_CHECKING:  # torch is imported where used: the numpy parts serve the torch-free ONNX engine
    from torch import Tensor

    from api.zipvoice.features import VocosFbank

SAMPLING_RATE = 24000
TARGET_RMS = 0.1
FEAT_SCALE = 0.1
SILENCE_THRESH_DB = -50.0
PROMPT_TRAIL_SIL_MS = 200
# pydub's AudioSegment.silent() default frame rate; trailing silence is created at this
# rate and converted, which decides its exact length.
_PYDUB_SILENT_RATE = 11025

# ---------------------------------------------------------------------------
# decoding / channels / resampling
# ---------------------------------------------------------------------------


def _pcm_to_float(raw: bytes, width: int, channels: int) -> np.ndarray:
    if width == 1:
        ints = np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128
        scale = 128.0
    elif width == 2:
        ints = np.frombuffer(raw, dtype="<i2").astype(np.int32)
        scale = 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8
        scale = 8388608.0
    elif width == 4:
        ints = np.frombuffer(raw, dtype="<i4").astype(np.int64)
        scale = 2147483648.0
    else:
        raise ValueError(f"unsupported PCM sample width {width}")
    data = (ints.astype(np.float64) / scale).astype(np.float32)
    return np.ascontiguousarray(data.reshape(-1, channels).T)


def _decode_with_av(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    import av  # local import: only needed for non-PCM containers

    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    with av.open(handle, mode="r") as container:
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate)
        channels = int(stream.codec_context.channels or 1)
        layout = "mono" if channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        parts: list[np.ndarray] = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray())
        for out in resampler.resample(None):
            parts.append(out.to_ndarray())
    width = 1 if channels == 1 else 2
    if not parts:
        return np.zeros((width, 0), dtype=np.float32), rate
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32), rate


def read_audio(source: str | Path | bytes) -> tuple[Tensor, int]:
    """Decode audio to float32 ``(C, T)`` and its rate.

    PCM WAV is read directly (int16 / 32768 like torchaudio); other formats go
    through PyAV and are reduced to at most 2 channels.
    """
    import torch

    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
        with handle, wave.open(handle, "rb") as wf:
            data = _pcm_to_float(wf.readframes(wf.getnframes()), wf.getsampwidth(), wf.getnchannels())
            return torch.from_numpy(data), wf.getframerate()
    except (wave.Error, EOFError):
        data, rate = _decode_with_av(source)
        return torch.from_numpy(data), rate


def match_channels(wav: Tensor, num_channels: int) -> Tensor:
    """Fit ``(C, T)`` audio to a model: mono models accept 1-2 channels as is (the
    feature extractor averages stereo, as upstream); >2 channels are averaged to mono.
    Stereo models need exactly 2 channels (mono is rejected, as upstream)."""
    if wav.ndim == 1:
        wav = wav.unsqueeze(0)
    if num_channels == 1:
        return wav.mean(dim=0, keepdim=True) if wav.shape[0] > 2 else wav
    if wav.shape[0] != 2:
        raise ValueError(f"a 2-channel prompt is required, got {wav.shape[0]} channel(s)")
    return wav


def resample(wav: Tensor, orig_sr: int, target_sr: int = SAMPLING_RATE) -> Tensor:
    """Resample ``(C, T)`` float audio with soxr (no-op when the rates match)."""
    import torch

    if orig_sr == target_sr:
        return wav
    out = soxr.resample(wav.detach().cpu().numpy().T.astype(np.float32), orig_sr, target_sr, quality="VHQ")
    return torch.from_numpy(
        np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, wav.shape[0]).T)
    )


# ---------------------------------------------------------------------------
# pydub-compatible silence removal (numpy)
# ---------------------------------------------------------------------------


def float_to_int16(wav: np.ndarray) -> np.ndarray:
    """Float ``(C, T)`` -> int16 ``(T, C)``, scaled by 32768 and truncated toward zero."""
    scaled = np.asarray(wav, dtype=np.float32) * np.float32(32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16).T.copy()


class _Segment:
    """Minimal stand-in for a 16-bit pydub AudioSegment: ``(frames, channels)`` int16."""

    def __init__(self, frames: np.ndarray, rate: int) -> None:
        self.frames = frames
        self.rate = rate
        sq = frames.astype(np.int64) ** 2
        self._cum = np.concatenate([[0], np.cumsum(sq.sum(axis=1))])

    def __len__(self) -> int:
        """Duration in whole milliseconds (Python ``round``, like pydub)."""
        return round(1000 * (len(self.frames) / self.rate))

    def _bounds(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        length = len(self)
        start, end = min(start_ms, length), min(end_ms, length)
        if start < 0:
            start = length - abs(start)
        if end < 0:
            end = length - abs(end)
        per_ms = self.rate / 1000.0
        return int(start * per_ms), int(end * per_ms)

    def slice(self, start_ms: int, end_ms: int | None = None) -> _Segment:
        """``seg[start:end]``; zero-pads frames missing before a whole-ms end."""
        s, e = self._bounds(start_ms, len(self) if end_ms is None else end_ms)
        data = self.frames[s:e]
        missing = (e - s) - len(data)
        if missing > 0:
            pad = np.zeros((missing, self.frames.shape[1]), dtype=np.int16)
            data = np.concatenate([data, pad], axis=0)
        return _Segment(data, self.rate)

    def rms_of(self, start_ms: int, end_ms: int) -> int:
        """Integer RMS (audioop semantics) of ``seg[start:end]`` without copying."""
        s, e = self._bounds(start_ms, end_ms)
        count = max(e - s, 0) * self.frames.shape[1]
        if count == 0:
            return 0
        n = len(self.frames)
        lo, hi = min(s, n), min(e, n)
        total = int(self._cum[hi] - self._cum[lo]) if hi > lo else 0
        return int(math.sqrt(total / count))

    def reverse(self) -> _Segment:
        return _Segment(self.frames[::-1].copy(), self.rate)


def _dbfs(rms: int) -> float:
    return -math.inf if rms == 0 else 20.0 * math.log10(rms / 32768.0)


def _detect_silence(seg: _Segment, min_len: int, thresh_db: float, seek_step: int) -> list[list[int]]:
    seg_len = len(seg)
    if seg_len < min_len:
        return []
    thresh = (10 ** (thresh_db / 20)) * 32768.0
    last_start = seg_len - min_len
    starts = list(range(0, last_start + 1, seek_step))
    if last_start % seek_step:
        starts.append(last_start)
    silent = [i for i in starts if seg.rms_of(i, i + min_len) <= thresh]
    if not silent:
        return []
    ranges: list[list[int]] = []
    range_start = prev = silent[0]
    for i in silent[1:]:
        continuous = i == prev + seek_step
        has_gap = i > prev + min_len
        if not continuous and has_gap:
            ranges.append([range_start, prev + min_len])
            range_start = i
        prev = i
    ranges.append([range_start, prev + min_len])
    return ranges


def _detect_nonsilent(seg: _Segment, min_len: int, thresh_db: float, seek_step: int) -> list[list[int]]:
    silent = _detect_silence(seg, min_len, thresh_db, seek_step)
    seg_len = len(seg)
    if not silent:
        return [[0, seg_len]]
    if silent[0][0] == 0 and silent[0][1] == seg_len:
        return []
    out: list[list[int]] = []
    prev_end = 0
    for start, end in silent:
        out.append([prev_end, start])
        prev_end = end
    if silent[-1][1] != seg_len:
        out.append([prev_end, seg_len])
    if out[0] == [0, 0]:
        out.pop(0)
    return out


def _split_on_silence(
    seg: _Segment, min_len: int, thresh_db: float, keep: int, seek_step: int
) -> list[_Segment]:
    ranges = [[s - keep, e + keep] for s, e in _detect_nonsilent(seg, min_len, thresh_db, seek_step)]
    for left, right in itertools.pairwise(ranges):
        if right[0] < left[1]:  # overlapping padding: meet in the middle
            left[1] = (left[1] + right[0]) // 2
            right[0] = left[1]
    seg_len = len(seg)
    return [seg.slice(max(s, 0), min(e, seg_len)) for s, e in ranges]


def _leading_silence_ms(seg: _Segment, thresh_db: float, chunk_ms: int = 10) -> int:
    trim = 0
    seg_len = len(seg)
    while _dbfs(seg.rms_of(trim, trim + chunk_ms)) < thresh_db and trim < seg_len:
        trim += chunk_ms
    return trim


def _trim_edges(seg: _Segment, keep_ms: int, thresh_db: float) -> _Segment:
    start = max(0, _leading_silence_ms(seg, thresh_db) - keep_ms)
    seg = seg.slice(start).reverse()
    start = max(0, _leading_silence_ms(seg, thresh_db) - keep_ms)
    return seg.slice(start).reverse()


def _pydub_silence_frames(duration_ms: float, rate: int) -> int:
    """Frames of ``AudioSegment.silent(duration_ms)`` after conversion to ``rate``.

    pydub creates it at 11025 Hz and converts with ``audioop.ratecv``, whose output
    length is ``floor((n - 1) * out / in) + 1`` for ``n`` input frames (reduced rates).
    """
    n = int(_PYDUB_SILENT_RATE * (duration_ms / 1000.0))
    if n == 0 or rate == _PYDUB_SILENT_RATE:
        return n
    g = math.gcd(_PYDUB_SILENT_RATE, rate)
    return (n - 1) * (rate // g) // (_PYDUB_SILENT_RATE // g) + 1


def remove_silence_np(
    wav: np.ndarray,
    sampling_rate: int = SAMPLING_RATE,
    only_edge: bool = False,
    trail_sil_ms: float = 0,
    min_silence_ms: int = 1000,
    keep_silence_ms: int = 1000,
    edge_keep_ms: int = 100,
    thresh_db: float = SILENCE_THRESH_DB,
) -> np.ndarray:
    """Upstream ``remove_silence`` for ``(C, T)`` float audio; returns float32 ``(C, T')``.

    Unless ``only_edge``, silences of >= 1 s are cut (keeping 1 s around speech); edge
    silence beyond 100 ms is trimmed; ``trail_sil_ms`` of zeros is appended. Output values
    are int16 / 32768 (truncated), lengths follow pydub's millisecond rounding.
    """
    if sampling_rate < _PYDUB_SILENT_RATE:
        raise ValueError(f"sampling rate {sampling_rate} below {_PYDUB_SILENT_RATE} is not supported")
    arr = np.asarray(wav)
    if arr.ndim == 1:
        arr = arr[None]
    channels = arr.shape[0]
    seg = _Segment(float_to_int16(arr), sampling_rate)
    if not only_edge:
        pieces = _split_on_silence(seg, min_silence_ms, thresh_db, keep_silence_ms, seek_step=10)
        joined = (
            np.concatenate([p.frames for p in pieces], axis=0)
            if pieces
            else np.zeros((0, channels), dtype=np.int16)
        )
        seg = _Segment(joined, sampling_rate)
    seg = _trim_edges(seg, edge_keep_ms, thresh_db)
    frames = seg.frames
    trail = _pydub_silence_frames(trail_sil_ms, sampling_rate)
    if trail:
        frames = np.concatenate([frames, np.zeros((trail, channels), dtype=np.int16)], axis=0)
    out = frames.T.astype(np.float32) / np.float32(32768.0)
    return np.ascontiguousarray(out)


def remove_silence(
    wav: Tensor | np.ndarray,
    sampling_rate: int = SAMPLING_RATE,
    only_edge: bool = False,
    trail_sil_ms: float = 0,
    min_silence_ms: int = 1000,
    keep_silence_ms: int = 1000,
    edge_keep_ms: int = 100,
    thresh_db: float = SILENCE_THRESH_DB,
) -> Tensor:
    """:func:`remove_silence_np` for a tensor (or array), returning a float32 tensor."""
    import torch

    arr = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    out = remove_silence_np(
        arr, sampling_rate, only_edge, trail_sil_ms, min_silence_ms, keep_silence_ms, edge_keep_ms, thresh_db
    )
    return torch.from_numpy(out)


# ---------------------------------------------------------------------------
# prompt preparation
# ---------------------------------------------------------------------------


def rms_norm(wav: Tensor, target_rms: float = TARGET_RMS) -> tuple[Tensor, float]:
    """Scale quiet audio up to ``target_rms``; returns ``(wav, original_rms)``."""
    import torch

    rms = torch.sqrt(torch.mean(torch.square(wav)))
    if rms < target_rms:
        wav = wav * target_rms / rms
    return wav, float(rms)


@dataclass
class PreparedPrompt:
    """A prompt ready for ``model.sample``."""

    wav: Tensor  # (C, T) 24 kHz after silence removal and RMS normalisation
    rms: float  # RMS before normalisation (drives the output volume restore)
    features: Tensor  # (1, frames, C_feat * 100), already multiplied by feat_scale

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[1])

    @property
    def duration(self) -> float:
        """Seconds of prompt audio (after silence handling)."""
        return self.wav.shape[-1] / SAMPLING_RATE


def prepare_prompt(
    wav: Tensor,
    sampling_rate: int,
    num_channels: int = 1,
    remove_silences: bool = True,
    target_rms: float = TARGET_RMS,
    feat_scale: float = FEAT_SCALE,
    trail_sil_ms: float = PROMPT_TRAIL_SIL_MS,
    extractor: VocosFbank | None = None,
) -> PreparedPrompt:
    """Upstream ``generate_sentence`` prompt path for a decoded ``(C, T)`` wave.

    ``remove_silences=False`` gives the raw-evaluation path (no silence handling).
    """
    import torch

    from api.zipvoice.features import VocosFbank

    wav = match_channels(wav.to(torch.float32), num_channels)
    wav = resample(wav, sampling_rate, SAMPLING_RATE)
    if remove_silences:
        wav = remove_silence(wav, SAMPLING_RATE, only_edge=False, trail_sil_ms=trail_sil_ms)
    wav, rms = rms_norm(wav, target_rms)
    extractor = extractor or VocosFbank(num_channels=num_channels)
    features = extractor.extract(wav, sampling_rate=SAMPLING_RATE).unsqueeze(0) * feat_scale
    return PreparedPrompt(wav=wav, rms=rms, features=features)


def load_prompt(source: str | Path | bytes, num_channels: int = 1, **kwargs: object) -> PreparedPrompt:
    """Read an audio file/bytes and run :func:`prepare_prompt` on it."""
    wav, rate = read_audio(source)
    return prepare_prompt(wav, rate, num_channels, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# output post-processing
# ---------------------------------------------------------------------------


class Vocoder(Protocol):
    """Anything with Vocos' ``decode(mel (B, 100, T)) -> wav (B, samples)``."""

    def decode(self, features: Tensor) -> Tensor: ...


def features_to_vocoder_input(pred_features: Tensor, feat_scale: float = FEAT_SCALE) -> Tensor:
    """Model output ``(B, T, F)`` (feat_scale domain) -> vocoder input ``(B, F, T)``."""
    return pred_features.permute(0, 2, 1) / feat_scale


def restore_volume(wav: Tensor, prompt_rms: float, target_rms: float = TARGET_RMS) -> Tensor:
    """Clamp to [-1, 1] and undo the prompt's RMS boost on the generated audio."""
    wav = wav.clamp(-1, 1)
    if prompt_rms < target_rms:
        wav = wav * prompt_rms / target_rms
    return wav


def cross_fade_concat(
    chunks: Sequence[Tensor], fade_s: float = 0.1, sampling_rate: int = SAMPLING_RATE
) -> Tensor:
    """Join ``(C, T)`` chunks with a linear cross-fade of ``fade_s`` seconds."""
    import torch

    if not chunks:
        return torch.zeros(1, 0)
    out = chunks[0]
    fade_len = int(fade_s * sampling_rate)
    for nxt in chunks[1:]:
        k = min(fade_len, out.shape[-1], nxt.shape[-1])
        if k <= 0:
            out = torch.cat([out, nxt], dim=-1)
            continue
        ramp = torch.linspace(1, 0, k, device=out.device)[None]
        mixed = out[..., -k:] * ramp + nxt[..., :k] * (1 - ramp)
        out = torch.cat([out[..., :-k], mixed, nxt[..., k:]], dim=-1)
    return out


def finalize_wav(wav: Tensor, remove_long_sil: bool = False, sampling_rate: int = SAMPLING_RATE) -> Tensor:
    """Final silence handling of the generated ``(C, T)`` audio (edges; long gaps optionally)."""
    return remove_silence(wav, sampling_rate, only_edge=not remove_long_sil, trail_sil_ms=0)


def synthesize_features_to_wav(
    vocoder: Vocoder,
    pred_features: Tensor,
    pred_features_lens: Tensor | Sequence[int],
    prompt_rms: float,
    target_rms: float = TARGET_RMS,
    feat_scale: float = FEAT_SCALE,
) -> list[Tensor]:
    """Vocode each item of a ``model.sample`` batch: ``(B, T, 100)`` -> list of ``(1, samples)``.

    Applies ``/ feat_scale``, trims to each length, clamps and restores the volume.
    """
    mel = features_to_vocoder_input(pred_features, feat_scale)
    wavs = []
    for i in range(mel.shape[0]):
        length = int(pred_features_lens[i])
        wav = vocoder.decode(mel[i : i + 1, :, :length])
        if wav.ndim == 3:
            wav = wav.squeeze(1)
        wavs.append(restore_volume(wav, prompt_rms, target_rms))
    return wavs


def to_int16_pcm(wav: Tensor) -> np.ndarray:
    """Float ``(C, T)`` in [-1, 1] -> interleaved int16 ``(T, C)`` by truncation (pydub rule)."""
    return float_to_int16(wav.detach().cpu().numpy())
