"""Vocos mel vocoder (``charactr/vocos-mel-24khz`` layout) in numpy: the torch-free twin of ``vocos.py``.

Interface (shared with the ONNX pipeline, keep it stable):

* ``NumpyVocos.from_dir(path)``: ``config.yaml`` plus ``pytorch_model.bin`` (read with the
  restricted loader of ``api.zipvoice.torch_pickle``, never ``torch.load``) or
  ``model.safetensors``; the key set and every shape are checked strictly against the config.
* ``NumpyVocos.from_state_dict(config, state)``: the same from parsed parts.
* ``.decode(mel)``: log-mel ``(B, 100, T)`` or ``(100, T)`` (anything ``np.asarray`` accepts)
  -> float32 waveform ``(B, (T - 1) * 256)`` (or ``((T - 1) * 256,)`` for a 2-D input).
* ``.backbone(mel (B, 100, T)) -> (B, T, dim)``, ``.head(x) -> wav``, ``.feature_extractor(wav)``
  and ``__call__(wav)`` (analysis-synthesis) mirror the torch modules for tests and tools.
* ``.sampling_rate`` (24000), ``.hop_length``.

The maths is that of ``api.zipvoice.vocos``: a 7-tap conv embedding, LayerNorm (eps 1e-6),
ConvNeXt blocks (depthwise 7-tap conv, LayerNorm, Linear, exact erf-GELU, Linear, layer scale
``gamma``, residual), a final LayerNorm; the ISTFT head projects to ``n_fft + 2`` channels,
``mag = min(exp(log_mag), 100)``, ``spec = mag * (cos(phase) + i sin(phase))``, then the centered
inverse STFT of ``torch.istft(center=True)``: irfft, periodic Hann window, overlap-add, division by
the summed squared window, ``n_fft // 2`` trimmed at both ends.

Everything runs time-major in float32 with BLAS matmuls: the conv embedding is one im2col
matmul, the depthwise conv 7 shifted multiply-adds, the pointwise MLP runs in blocks of 256 time
steps (its GELU in place, cache-sized), LayerNorm reductions are dot products. erf is a float32
rational minimax approximation (absolute error below 5e-7; numpy has no erf and scipy is not a
dependency). Memory grows linearly with ``T`` (a few ``T * dim`` float32 arrays, plus the STFT
frames of the head). Speed: about the PyTorch vocoder's CPU time (1.05-1.3x at 1 thread for 5 s
of audio with the official sizes); thread-safe (no state changes after loading).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from api.zipvoice.features_np import MelSpectrogram, log_mel
from api.zipvoice.torch_pickle import load_state_dict

__all__ = ["NumpyVocos", "erf", "gelu", "init_args", "istft", "load_numpy_vocos", "parse_config"]

_EXPECTED = {
    "feature_extractor": "MelSpectrogramFeatures",
    "backbone": "VocosBackbone",
    "head": "ISTFTHead",
}
_LN_EPS = 1e-6
_MLP_ROWS = 256  # time steps per pointwise-MLP block
_MAG_MAX = np.float32(1e2)


def init_args(config: Mapping[str, Any], section: str) -> dict[str, Any]:
    """A section's ``init_args`` of a Vocos ``config.yaml``, its class checked (shared with ``vocos.py``)."""
    entry = config.get(section)
    if not isinstance(entry, dict):
        raise ValueError(f"vocos config: missing section {section!r}")
    class_path = str(entry.get("class_path", ""))
    if class_path.rsplit(".", 1)[-1] != _EXPECTED[section]:
        raise ValueError(f"vocos config: unsupported {section} class {class_path!r}")
    args = entry.get("init_args") or {}
    if not isinstance(args, dict):
        raise ValueError(f"vocos config: bad init_args for {section}")
    return dict(args)


def parse_config(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Validated ``init_args`` per section of a Vocos ``config.yaml`` (the subset ``vocos.py`` builds)."""
    fe: dict[str, Any] = {
        "sample_rate": 24000,
        "n_fft": 1024,
        "hop_length": 256,
        "n_mels": 100,
        "padding": "center",
    }
    fe.update(init_args(config, "feature_extractor"))
    bb = init_args(config, "backbone")
    head: dict[str, Any] = {"padding": "center"}
    head.update(init_args(config, "head"))
    if bb.pop("adanorm_num_embeddings", None) is not None:
        raise ValueError("vocos config: AdaLayerNorm backbones are not supported")
    if fe["padding"] != "center" or head["padding"] != "center":
        raise ValueError("vocos config: only 'center' padding is supported")
    unknown = set(bb) - {"input_channels", "dim", "intermediate_dim", "num_layers", "layer_scale_init_value"}
    unknown |= set(head) - {"dim", "n_fft", "hop_length", "padding"}
    unknown |= set(fe) - {"sample_rate", "n_fft", "hop_length", "n_mels", "padding"}
    if unknown:
        raise ValueError(f"vocos config: unsupported arguments {sorted(unknown)}")
    try:
        for key in ("input_channels", "dim", "intermediate_dim", "num_layers"):
            bb[key] = int(bb[key])
        for key in ("dim", "n_fft", "hop_length"):
            head[key] = int(head[key])
        for key in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            fe[key] = int(fe[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"vocos config: missing or bad size ({exc})") from exc
    return {"feature_extractor": fe, "backbone": bb, "head": head}


def _expected_shapes(cfg: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[int, ...]]:
    fe, bb, head = cfg["feature_extractor"], cfg["backbone"], cfg["head"]
    dim, inter, cin = bb["dim"], bb["intermediate_dim"], bb["input_channels"]
    n_fft = int(fe["n_fft"])
    shapes: dict[str, tuple[int, ...]] = {
        "feature_extractor.mel_spec.spectrogram.window": (n_fft,),
        "feature_extractor.mel_spec.mel_scale.fb": (n_fft // 2 + 1, int(fe["n_mels"])),
        "backbone.embed.weight": (dim, cin, 7),
        "backbone.embed.bias": (dim,),
        "backbone.norm.weight": (dim,),
        "backbone.norm.bias": (dim,),
        "backbone.final_layer_norm.weight": (dim,),
        "backbone.final_layer_norm.bias": (dim,),
        "head.out.weight": (head["n_fft"] + 2, head["dim"]),
        "head.out.bias": (head["n_fft"] + 2,),
        "head.istft.window": (head["n_fft"],),
    }
    for i in range(bb["num_layers"]):
        p = f"backbone.convnext.{i}."
        shapes.update(
            {
                p + "dwconv.weight": (dim, 1, 7),
                p + "dwconv.bias": (dim,),
                p + "norm.weight": (dim,),
                p + "norm.bias": (dim,),
                p + "pwconv1.weight": (inter, dim),
                p + "pwconv1.bias": (inter,),
                p + "pwconv2.weight": (dim, inter),
                p + "pwconv2.bias": (dim,),
                p + "gamma": (dim,),
            }
        )
    return shapes


# Rational minimax fit of erf on [-4, 4] in x**2 (the float32 ``erf`` of XLA and Eigen); beyond
# |x| = 4, float32 erf is exactly +-1. Only multiply-adds and one division: fast and in float32.
_ERF_ALPHA = tuple(
    np.float32(c)
    for c in (
        -2.72614225801306e-10,
        2.77068142495902e-08,
        -2.10102402082508e-06,
        -5.69250639462346e-05,
        -7.34990630326855e-04,
        -2.95459980854025e-03,
        -1.60960333262415e-02,
    )
)
_ERF_BETA = tuple(
    np.float32(c)
    for c in (
        -1.45660718464996e-05,
        -2.13374055278905e-04,
        -1.68282697438203e-03,
        -7.37332916720468e-03,
        -1.42647390514189e-02,
    )
)


def _horner(x2: np.ndarray, coeffs: tuple[np.float32, ...]) -> np.ndarray:
    acc = x2 * coeffs[0]
    acc += coeffs[1]
    for c in coeffs[2:]:
        acc *= x2
        acc += c
    return acc


def erf(x: np.ndarray) -> np.ndarray:
    """float32 ``erf`` (absolute error about 1e-7, i.e. float32 rounding level)."""
    x = np.clip(np.asarray(x, dtype=np.float32), -4.0, 4.0)
    x2 = x * x
    num = _horner(x2, _ERF_ALPHA)
    num *= x
    num /= _horner(x2, _ERF_BETA)
    return num


_GELU_BLOCK = 32768  # elements per pass: the ~25 elementwise passes stay in the CPU cache


def _gelu_inplace(flat: np.ndarray) -> None:
    """``flat *= Phi(flat)`` (exact erf GELU) on a contiguous 1-D float32 array, block by block."""
    block = min(_GELU_BLOCK, flat.shape[0])
    z_buf, x2_buf = np.empty(block, np.float32), np.empty(block, np.float32)
    num_buf, den_buf = np.empty(block, np.float32), np.empty(block, np.float32)
    for start in range(0, flat.shape[0], block):
        xb = flat[start : start + block]
        n = xb.shape[0]
        z, x2, num, den = z_buf[:n], x2_buf[:n], num_buf[:n], den_buf[:n]
        np.multiply(xb, np.float32(0.7071067811865476), out=z)
        np.clip(z, np.float32(-4.0), np.float32(4.0), out=z)
        np.multiply(z, z, out=x2)
        for acc, coeffs in ((num, _ERF_ALPHA), (den, _ERF_BETA)):
            np.multiply(x2, coeffs[0], out=acc)
            acc += coeffs[1]
            for c in coeffs[2:]:
                acc *= x2
                acc += c
        num *= z
        num /= den  # erf(x / sqrt(2))
        num += np.float32(1.0)
        num *= np.float32(0.5)
        xb *= num


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU as ``torch.nn.GELU()``: ``0.5 * x * (1 + erf(x / sqrt(2)))``, float32."""
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    _gelu_inplace(out.reshape(-1))
    return out


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """LayerNorm over the last axis (eps 1e-6); the reductions run as BLAS/einsum dot products."""
    dim = x.shape[-1]
    mean = x @ np.full(dim, 1.0 / dim, dtype=np.float32)
    centred = x - mean[..., None]
    var = np.einsum("...i,...i->...", centred, centred)
    var *= np.float32(1.0 / dim)
    var += np.float32(_LN_EPS)
    centred *= (1.0 / np.sqrt(var))[..., None]
    centred *= weight
    centred += bias
    return centred


def _pad_time(x: np.ndarray, pad: int) -> np.ndarray:
    """Zero-pad ``(B, T, C)`` along time."""
    return np.pad(x, ((0, 0), (pad, pad), (0, 0)))


def istft(spec: np.ndarray, n_fft: int, hop_length: int, window: np.ndarray) -> np.ndarray:
    """``torch.istft(spec, n_fft, hop, n_fft, window, center=True)`` for ``spec (B, n_fft//2+1, N)``.

    Returns ``(B, (N - 1) * hop)`` float32. The window-envelope check of torch is kept: a
    near-zero envelope inside the output raises ``ValueError``.
    """
    batch, _, n_frames = spec.shape
    frames = np.fft.irfft(spec.transpose(0, 2, 1), n=n_fft, axis=-1).astype(np.float32)  # (B, N, n_fft)
    frames *= window
    segs = -(-n_fft // hop_length)
    width = segs * hop_length
    if width != n_fft:
        frames = np.pad(frames, ((0, 0), (0, 0), (0, width - n_fft)))
    win_sq = np.zeros(width, dtype=np.float32)
    win_sq[:n_fft] = np.square(window)
    total = n_frames + segs - 1
    out = np.zeros((batch, total, hop_length), dtype=np.float32)
    env = np.zeros((total, hop_length), dtype=np.float32)
    for j in range(segs):
        out[:, j : j + n_frames] += frames[:, :, j * hop_length : (j + 1) * hop_length]
        env[j : j + n_frames] += win_sq[j * hop_length : (j + 1) * hop_length]
    start = n_fft // 2
    end = n_fft + hop_length * (n_frames - 1) - n_fft // 2
    y = out.reshape(batch, -1)[:, start:end]
    envelope = env.reshape(-1)[start:end]
    if envelope.size and float(np.abs(envelope).min()) < 1e-11:
        raise ValueError("istft: window overlap-add envelope is zero inside the output")
    return y / envelope


class NumpyVocos:
    """Vocos ``decode(mel) -> wav`` in numpy (see the module docstring)."""

    def __init__(self, config: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> None:
        cfg = parse_config(config)
        shapes = _expected_shapes(cfg)
        missing = sorted(set(shapes) - set(state))
        extra = sorted(set(state) - set(shapes))
        if missing or extra:
            raise ValueError(
                f"vocos weights do not match the config: missing {missing[:5]}, unexpected {extra[:5]}"
            )
        params: dict[str, np.ndarray] = {}
        for key, shape in shapes.items():
            value = np.asarray(state[key])
            if value.shape != shape:
                raise ValueError(f"vocos weight {key}: shape {value.shape}, expected {shape}")
            if not np.issubdtype(value.dtype, np.floating):
                raise ValueError(f"vocos weight {key}: dtype {value.dtype} is not floating point")
            params[key] = np.ascontiguousarray(value, dtype=np.float32)
        fe, bb, head = cfg["feature_extractor"], cfg["backbone"], cfg["head"]
        self.sampling_rate = int(fe["sample_rate"])
        self.n_mels = int(bb["input_channels"])
        self.n_fft = head["n_fft"]
        self.hop_length = head["hop_length"]
        self.num_layers = bb["num_layers"]
        self.mel_spec = MelSpectrogram(
            self.sampling_rate,
            int(fe["n_fft"]),
            int(fe["hop_length"]),
            int(fe["n_mels"]),
            window=params["feature_extractor.mel_spec.spectrogram.window"],
            fb=params["feature_extractor.mel_spec.mel_scale.fb"],
        )
        # time-major layouts: linears as (in, out)
        embed_w = params["backbone.embed.weight"]
        self._embed_w = np.ascontiguousarray(embed_w.reshape(embed_w.shape[0], -1).T)  # (C_in * 7, dim)
        self._embed_b = params["backbone.embed.bias"]
        self._norm = (params["backbone.norm.weight"], params["backbone.norm.bias"])
        self._final_norm = (
            params["backbone.final_layer_norm.weight"],
            params["backbone.final_layer_norm.bias"],
        )
        self._blocks: list[dict[str, np.ndarray]] = []
        for i in range(self.num_layers):
            p = f"backbone.convnext.{i}."
            self._blocks.append(
                {
                    "dw_w": np.ascontiguousarray(params[p + "dwconv.weight"][:, 0, :].T),  # (7, C)
                    "dw_b": params[p + "dwconv.bias"],
                    "ln_w": params[p + "norm.weight"],
                    "ln_b": params[p + "norm.bias"],
                    "w1": np.ascontiguousarray(params[p + "pwconv1.weight"].T),
                    "b1": params[p + "pwconv1.bias"],
                    "w2": np.ascontiguousarray(params[p + "pwconv2.weight"].T),
                    "b2": params[p + "pwconv2.bias"],
                    "gamma": params[p + "gamma"],
                }
            )
        self._head_w = np.ascontiguousarray(params["head.out.weight"].T)
        self._head_b = params["head.out.bias"]
        self._istft_window = params["head.istft.window"]

    @classmethod
    def from_state_dict(cls, config: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> NumpyVocos:
        """Build from a parsed ``config.yaml`` and a ``name -> array`` state dict."""
        return cls(config, state)

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> NumpyVocos:
        """Load ``config.yaml`` + ``pytorch_model.bin`` (or ``model.safetensors``) from ``model_dir``."""
        model_dir = Path(model_dir)
        with (model_dir / "config.yaml").open(encoding="utf-8") as fh:
            config = yaml.safe_load(fh)
        if not isinstance(config, dict):
            raise ValueError(f"{model_dir / 'config.yaml'}: not a mapping")
        bin_path = model_dir / "pytorch_model.bin"
        st_path = model_dir / "model.safetensors"
        state: Mapping[str, np.ndarray]
        if bin_path.is_file():
            state = load_state_dict(bin_path)
        elif st_path.is_file():
            from safetensors.numpy import load_file

            state = load_file(str(st_path))
        else:
            raise FileNotFoundError(f"{model_dir}: neither pytorch_model.bin nor model.safetensors")
        return cls(config, state)

    # -- network -----------------------------------------------------------------------------

    def backbone(self, mel: np.ndarray) -> np.ndarray:
        """``(B, n_mels, T)`` -> ``(B, T, dim)`` float32."""
        x = np.asarray(mel, dtype=np.float32)
        if x.ndim != 3 or x.shape[1] != self.n_mels:
            raise ValueError(f"expected mel of shape (B, {self.n_mels}, T), got {tuple(x.shape)}")
        x = np.ascontiguousarray(x.transpose(0, 2, 1))  # (B, T, n_mels)
        batch, steps, _ = x.shape
        xp = _pad_time(x, 3)
        # conv embedding as one im2col matmul: rows (b, t), columns (c_in, tap) like the weight
        cols = np.lib.stride_tricks.sliding_window_view(xp, 7, axis=1).reshape(batch * steps, -1)
        h = cols @ self._embed_w
        h += self._embed_b
        h = _layer_norm(h, *self._norm).reshape(batch, steps, -1)
        for blk in self._blocks:
            hp = _pad_time(h, 3)
            dw = hp[:, 0:steps] * blk["dw_w"][0]
            for k in range(1, 7):
                dw += hp[:, k : k + steps] * blk["dw_w"][k]
            dw += blk["dw_b"]
            y = _layer_norm(dw.reshape(batch * steps, -1), blk["ln_w"], blk["ln_b"])
            h = h + self._mlp(y, blk).reshape(batch, steps, -1)
        return _layer_norm(h, *self._final_norm).astype(np.float32, copy=False)

    @staticmethod
    def _mlp(y: np.ndarray, blk: dict[str, np.ndarray]) -> np.ndarray:
        """``gamma * pwconv2(gelu(pwconv1(y)))`` on ``(rows, dim)``, in row blocks that stay cache-sized."""
        out = np.empty((y.shape[0], blk["w2"].shape[1]), dtype=np.float32)
        for start in range(0, y.shape[0], _MLP_ROWS):
            hidden = y[start : start + _MLP_ROWS] @ blk["w1"]
            hidden += blk["b1"]
            _gelu_inplace(hidden.reshape(-1))
            block = hidden @ blk["w2"]
            block += blk["b2"]
            block *= blk["gamma"]
            out[start : start + _MLP_ROWS] = block
        return out

    def head(self, x: np.ndarray) -> np.ndarray:
        """``(B, T, dim)`` -> waveform ``(B, (T - 1) * hop)`` float32."""
        out = x @ self._head_w + self._head_b  # (B, T, n_fft + 2)
        half = out.shape[-1] // 2
        log_mag, phase = out[..., :half], out[..., half:]
        with np.errstate(over="ignore"):
            mag = np.minimum(np.exp(log_mag), _MAG_MAX)
        spec = (mag * np.cos(phase) + 1j * (mag * np.sin(phase))).astype(np.complex64)
        return istft(spec.transpose(0, 2, 1), self.n_fft, self.hop_length, self._istft_window)

    def decode(self, features: Any) -> np.ndarray:
        """Log-mel ``(B, 100, T)`` or ``(100, T)`` -> waveform ``(B, (T - 1) * 256)`` (or 1-D)."""
        mel = np.asarray(features, dtype=np.float32)
        squeeze = mel.ndim == 2
        if squeeze:
            mel = mel[None]
        if mel.ndim != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(
                f"expected mel of shape (B, {self.n_mels}, T) or ({self.n_mels}, T), got {mel.shape}"
            )
        if mel.shape[2] < 1:
            raise ValueError("cannot vocode an empty mel spectrogram")
        if not np.isfinite(mel).all():
            raise ValueError("mel spectrogram contains NaN or infinite values")
        wav = self.head(self.backbone(mel))
        return wav[0] if squeeze else wav

    def feature_extractor(self, audio: np.ndarray) -> np.ndarray:
        """Waveform ``(B, T)`` -> log-mel ``(B, n_mels, 1 + T // hop)``, as the vocoder was trained."""
        return log_mel(self.mel_spec(np.asarray(audio, dtype=np.float32)))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Analysis-synthesis: waveform ``(B, T)`` -> reconstructed waveform."""
        return self.decode(self.feature_extractor(audio))


def load_numpy_vocos(model_dir: str | Path) -> NumpyVocos:
    """``NumpyVocos.from_dir`` as a function (mirrors ``vocos.load_vocos``)."""
    return NumpyVocos.from_dir(model_dir)
