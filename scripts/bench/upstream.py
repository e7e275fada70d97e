"""Upstream k2-fsa/ZipVoice in the peers section: its PyTorch and ONNX inference, side by side.

    .venv/bin/python scripts/bench.py --sections peers --upstream-src /path/to/ZipVoice --repeats 3 --merge

With ``--upstream-src`` (a checkout of https://github.com/k2-fsa/ZipVoice; never copied into this
repository) the peers section adds three sides to its interleaved loop, per configuration (threads ×
output): ours through :class:`ZipVoiceEngine` with ``ENGINE=torch`` (the server's PyTorch path),
upstream's PyTorch inference (``zipvoice.bin.infer_zipvoice.generate_sentence``) and upstream's ONNX
inference (``zipvoice.bin.infer_zipvoice_onnx.generate_sentence`` with ``--onnx-int8`` files), in the
order ours-torch, upstream-torch, ours-onnx, upstream-onnx, sherpa-onnx (reversed every other
repeat). ``zipvoice`` (16 steps, PyTorch only) gets the same two PyTorch sides in a loop of its own.

Same inputs on every side: the full-size random-weight checkpoint in upstream's layout
(``model.json``, ``tokens.txt``, ``model.pt``), the same full-size random Vocos (``config.yaml`` +
``pytorch_model.bin``, loaded by upstream's ``get_vocoder``), our ``zipvoice-export`` int8 files for
ONNX (the official layout, interchangeable with upstream's export), the fixture prompt and its
transcript, the same text, steps, guidance scale (upstream's defaults: 3.0 distill, 1.0 zipvoice) and
threads (``torch.set_num_threads``; upstream's ONNX sessions use ``num_thread`` for intra- and
inter-op, as its script does). Each measurement is a fresh process: load, one 1-step warm-up on the
same text (not counted), one timed request that recomputes the prompt (upstream's
``generate_sentence`` loads the prompt wav, trims its silences, extracts its features and tokenizes
both texts on every call; the timer wraps the whole call, wav write included).

Upstream runs in a scratch venv that this module builds under the bench cache
(``<cache-dir>/upstream-venv``) with ``uv venv`` + ``uv pip install``: upstream's
``requirements.txt`` without torchaudio, our torch build (the CPU wheel from ``WHEEL_DIR``, default
``/opt/wheels``, when there) and our onnxruntime version; ``vocos`` and ``encodec`` without their
dependencies (both require torchaudio). torchaudio has no CPU wheel here, so the venv gets a small
stand-in package, written into its site-packages by :func:`write_standin` and importable nowhere
else: ``transforms.MelSpectrogram`` (torch.stft with the same parameters: centred reflect-padded
STFT, periodic Hann window, HTK mel filters without normalisation; buffers ``spectrogram.window`` and
``mel_scale.fb`` so Vocos' state dict loads), ``load``/``save`` (PCM WAV), and ``Resample`` for equal
rates only (the fixture prompt is already 24 kHz).

The worker entry (:func:`upstream_worker`) runs inside that venv with this file as a script
(``python scripts/bench/upstream.py --worker SPEC OUT``): it imports nothing of this project.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the sides this module measures (the peers loop calls :func:`measure` for them)
SIDES = ("ours-torch", "upstream-torch", "upstream-onnx")
#: one configuration's order in the interleaved loop (reversed every other repeat)
ALL_SIDES = ("ours-torch", "upstream-torch", "ours", "upstream-onnx", "sherpa")
STEPS = {"zipvoice_distill": 8, "zipvoice": 16}
GUIDANCE = {"zipvoice_distill": 3.0, "zipvoice": 1.0}  # upstream's defaults per model
SEED = 666  # upstream's default seed
GOAL_TORCH = 1.3  # upstream PyTorch RTF / ours (goal 2)
GOAL_ONNX = 1.3  # upstream ONNX RTF / ours (goal 3)
ENV_SRC = "ZIPVOICE_UPSTREAM_SRC"  # the checkout the opt-in test uses
#: packages of upstream's requirements.txt handled apart: torchaudio is replaced by the stand-in,
#: torch is pinned to ours, vocos/encodec go in without their dependencies (they pull torchaudio)
SKIPPED = {"torchaudio", "torch"}
NO_DEPS = {"vocos", "encodec"}
#: what vocos needs beside its requirements (encodec: imported by vocos.pretrained; not in upstream's list)
NO_DEPS_ADDED = ["encodec"]
#: the dependencies of vocos and encodec other than torch/torchaudio, and urllib3 (lhotse imports it
#: without declaring it)
NO_DEPS_REQUIRES = ["scipy", "einops", "pyyaml", "huggingface_hub", "numpy", "urllib3"]
THIS = Path(__file__).resolve()


# --------------------------------------------------------------------------------------------------
# the torchaudio stand-in (written into the scratch venv only)
# --------------------------------------------------------------------------------------------------
_STANDIN_INIT = '''"""torchaudio stand-in for the benchmark's scratch venv (written by scripts/bench/upstream.py).

Only what k2-fsa/ZipVoice's inference (and vocos/encodec at import) use: transforms.MelSpectrogram
via torch.stft, load/save of PCM WAV files, Resample between equal rates.
"""

import wave

import numpy as np
import torch

from . import functional, transforms  # noqa: F401

__version__ = "0.0.0+bench.standin"


def load(uri, frame_offset=0, num_frames=-1, normalize=True, channels_first=True, **_):
    with wave.open(str(uri), "rb") as w:
        width, channels, rate, n = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.getnframes()
        w.setpos(frame_offset)
        raw = w.readframes(n - frame_offset if num_frames < 0 else num_frames)
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise RuntimeError(f"torchaudio stand-in: {width * 8}-bit WAV is not supported")
    x = torch.from_numpy(x.reshape(-1, channels).T.copy())
    return (x if channels_first else x.T), rate


def save(uri, src, sample_rate, channels_first=True, **_):
    x = src.detach().cpu().float()
    if x.ndim == 1:
        x = x[None]
    if not channels_first:
        x = x.T
    pcm = (x.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16).T.contiguous().numpy()
    with wave.open(str(uri), "wb") as w:
        w.setnchannels(x.shape[0])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
'''

_STANDIN_FUNCTIONAL_INIT = '''"""torchaudio.functional stand-in."""

from .functional import _hz_to_mel, _mel_to_hz, melscale_fbanks, resample, spectrogram  # noqa: F401
'''

_STANDIN_FUNCTIONAL = '''"""torchaudio.functional.functional stand-in: the mel filterbank and the spectrogram."""

import math

import torch


def _hz_to_mel(freq, mel_scale="htk"):
    if mel_scale != "htk":
        raise NotImplementedError("torchaudio stand-in: only the HTK mel scale")
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def _mel_to_hz(mels, mel_scale="htk"):
    if mel_scale != "htk":
        raise NotImplementedError("torchaudio stand-in: only the HTK mel scale")
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm=None, mel_scale="htk"):
    if norm is not None:
        raise NotImplementedError("torchaudio stand-in: only norm=None")
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_pts = torch.linspace(_hz_to_mel(f_min, mel_scale), _hz_to_mel(f_max, mel_scale), n_mels + 2)
    f_pts = _mel_to_hz(m_pts, mel_scale)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0)


def spectrogram(waveform, pad, window, n_fft, hop_length, win_length, power, normalized,
                center=True, pad_mode="reflect", onesided=True):
    if pad > 0:
        waveform = torch.nn.functional.pad(waveform, (pad, pad), "constant")
    shape = waveform.size()
    waveform = waveform.reshape(-1, shape[-1])
    spec = torch.stft(waveform, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
                      window=window, center=center, pad_mode=pad_mode, normalized=False,
                      onesided=onesided, return_complex=True)
    spec = spec.reshape(shape[:-1] + spec.shape[-2:])
    if normalized:
        spec = spec / window.pow(2.0).sum().sqrt()
    if power is None:
        return spec
    return spec.abs() if power == 1.0 else spec.abs().pow(power)


def resample(waveform, orig_freq, new_freq, **_):
    if int(orig_freq) != int(new_freq):
        raise NotImplementedError("torchaudio stand-in: resampling between different rates")
    return waveform
'''

_STANDIN_TRANSFORMS = '''"""torchaudio.transforms stand-in: MelSpectrogram (same module layout and buffers) and Resample."""

import torch
from torch import nn

from . import functional as F


class Spectrogram(nn.Module):
    def __init__(self, n_fft=400, win_length=None, hop_length=None, pad=0, window_fn=torch.hann_window,
                 power=2.0, normalized=False, wkwargs=None, center=True, pad_mode="reflect",
                 onesided=True, **_):
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length if win_length is not None else n_fft
        self.hop_length = hop_length if hop_length is not None else self.win_length // 2
        window = window_fn(self.win_length) if wkwargs is None else window_fn(self.win_length, **wkwargs)
        self.register_buffer("window", window)
        self.pad, self.power, self.normalized = pad, power, normalized
        self.center, self.pad_mode, self.onesided = center, pad_mode, onesided

    def forward(self, waveform):
        return F.spectrogram(waveform, self.pad, self.window, self.n_fft, self.hop_length,
                             self.win_length, self.power, self.normalized, self.center,
                             self.pad_mode, self.onesided)


class MelScale(nn.Module):
    def __init__(self, n_mels=128, sample_rate=16000, f_min=0.0, f_max=None, n_stft=201, norm=None,
                 mel_scale="htk"):
        super().__init__()
        f_max = f_max if f_max is not None else float(sample_rate // 2)
        fb = F.melscale_fbanks(n_stft, f_min, f_max, n_mels, sample_rate, norm, mel_scale)
        self.register_buffer("fb", fb)

    def forward(self, specgram):
        return torch.matmul(specgram.transpose(-1, -2), self.fb).transpose(-1, -2)


class MelSpectrogram(nn.Module):
    def __init__(self, sample_rate=16000, n_fft=400, win_length=None, hop_length=None, f_min=0.0,
                 f_max=None, pad=0, n_mels=128, window_fn=torch.hann_window, power=2.0,
                 normalized=False, wkwargs=None, center=True, pad_mode="reflect", onesided=None,
                 norm=None, mel_scale="htk"):
        super().__init__()
        self.spectrogram = Spectrogram(n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                                       pad=pad, window_fn=window_fn, power=power,
                                       normalized=normalized, wkwargs=wkwargs, center=center,
                                       pad_mode=pad_mode, onesided=True)
        self.mel_scale = MelScale(n_mels, sample_rate, f_min, f_max, n_fft // 2 + 1, norm, mel_scale)

    def forward(self, waveform):
        return self.mel_scale(self.spectrogram(waveform))


class Resample(nn.Module):
    def __init__(self, orig_freq=16000, new_freq=16000, **_):
        super().__init__()
        self.orig_freq, self.new_freq = orig_freq, new_freq

    def forward(self, waveform):
        return F.resample(waveform, self.orig_freq, self.new_freq)
'''

#: the stand-in package: path inside ``torchaudio/`` -> source
STANDIN = {
    "__init__.py": _STANDIN_INIT,
    "functional/__init__.py": _STANDIN_FUNCTIONAL_INIT,
    "functional/functional.py": _STANDIN_FUNCTIONAL,
    "transforms.py": _STANDIN_TRANSFORMS,
}


def write_standin(site_packages: Path) -> Path:
    """Write the ``torchaudio`` stand-in package into ``site_packages``; returns its folder."""
    pkg = site_packages / "torchaudio"
    pkg.mkdir(parents=True, exist_ok=True)
    for name, text in STANDIN.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text, encoding="utf-8")
    return pkg


# --------------------------------------------------------------------------------------------------
# the scratch venv
# --------------------------------------------------------------------------------------------------
def _name(req: str) -> str:
    return re.split(r"[<>=!~\[;@ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements(text: str) -> tuple[list[str], list[str]]:
    """Upstream's ``requirements.txt`` as (install normally, install without dependencies)."""
    normal: list[str] = []
    no_deps: list[str] = []
    for line in text.splitlines():
        req = line.split("#", 1)[0].strip()
        if not req or req.startswith("-"):  # blank, comment, --find-links (not reachable here)
            continue
        name = _name(req)
        if name in SKIPPED:
            continue
        (no_deps if name in NO_DEPS else normal).append(req)
    return normal, no_deps


def venv_commands(
    src: Path, venv: Path, python: str, torch_version: str, ort_version: str | None, wheel_dir: Path
) -> list[list[str]]:
    """The ``uv`` commands that build the scratch venv (the stand-in is written after them)."""
    normal, no_deps = requirements((src / "requirements.txt").read_text(encoding="utf-8"))
    vpy = str(venv / "bin" / "python")
    base = torch_version.split("+", 1)[0]
    wheels = sorted(wheel_dir.glob(f"torch-{base}*.whl")) if wheel_dir.is_dir() else []
    torch_req = (
        [str(wheels[0])]
        if wheels
        else [f"torch=={base}", "--index-url", "https://download.pytorch.org/whl/cpu"]
    )
    ort = [f"onnxruntime=={ort_version}" if ort_version else "onnxruntime"]
    extra = [r for r in NO_DEPS_REQUIRES if r not in {_name(n) for n in normal}]
    commands = [
        ["uv", "venv", "--clear", "--python", python, str(venv)],
        ["uv", "pip", "install", "--python", vpy, *torch_req],
        ["uv", "pip", "install", "--python", vpy, *normal, *ort, *extra],
    ]
    if no_deps:
        added = [r for r in NO_DEPS_ADDED if r not in {_name(n) for n in no_deps}]
        commands.append(["uv", "pip", "install", "--python", vpy, "--no-deps", *no_deps, *added])
    return commands


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def ensure_venv(src: Path, venv: Path, log: Any = print) -> Path:
    """The scratch venv's python, built (or rebuilt when its inputs changed) with ``uv``."""
    torch_version = _version("torch") or "2.13.0"
    ort_version = _version("onnxruntime")
    wheel_dir = Path(os.environ.get("WHEEL_DIR", "/opt/wheels"))
    commands = venv_commands(src, venv, sys.executable, torch_version, ort_version, wheel_dir)
    stamp_text = json.dumps({"commands": commands, "standin": STANDIN}, sort_keys=True)
    stamp = venv / ".bench-upstream-stamp"
    vpy = venv / "bin" / "python"
    digest = hashlib.sha256(stamp_text.encode()).hexdigest()
    if vpy.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return vpy
    log(f"upstream: building the scratch venv {venv} (uv; one-time)")
    for cmd in commands:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"{' '.join(cmd[:4])} … failed: {' / '.join(tail)}")
    site = subprocess.run(
        [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    write_standin(Path(site))
    stamp.write_text(digest, encoding="utf-8")
    return vpy


# --------------------------------------------------------------------------------------------------
# workers (each in a fresh process)
# --------------------------------------------------------------------------------------------------
def _rss_now_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _finish(out: dict[str, Any]) -> dict[str, Any]:
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rtf"] = out["run_s"] / out["audio_s"] if out.get("audio_s") else None
    return out


def upstream_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One upstream measurement, inside the scratch venv (imports upstream, never this project)."""
    sys.path.insert(0, str(spec["upstream_src"]))
    import torch

    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    from lhotse.utils import fix_random_seed
    from zipvoice.bin.infer_zipvoice import get_vocoder
    from zipvoice.tokenizer.tokenizer import EmiliaTokenizer
    from zipvoice.utils.feature import VocosFbank

    variant = spec["variant"]
    model_dir = Path(spec["model_dir"])
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    with torch.inference_mode():
        tokenizer = EmiliaTokenizer(token_file=str(model_dir / "tokens.txt"))
        if spec["side"] == "upstream-torch":
            from zipvoice.bin import infer_zipvoice as infer
            from zipvoice.models.zipvoice import ZipVoice
            from zipvoice.models.zipvoice_distill import ZipVoiceDistill
            from zipvoice.utils.checkpoint import load_checkpoint

            config = json.loads((model_dir / "model.json").read_text())
            cls = ZipVoiceDistill if variant == "zipvoice_distill" else ZipVoice
            model: Any = cls(**config["model"], vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)
            load_checkpoint(filename=model_dir / "model.pt", model=model, strict=True)
            model = model.to(torch.device("cpu")).eval()
            extra["device"] = torch.device("cpu")
        else:
            from zipvoice.bin import infer_zipvoice_onnx as infer

            model = infer.OnnxModel(
                str(model_dir / "text_encoder_int8.onnx"),
                str(model_dir / "fm_decoder_int8.onnx"),
                num_thread=threads,
            )
        vocoder = get_vocoder(str(spec["vocos_dir"])).eval()
        features = VocosFbank()
    load_s = time.perf_counter() - t0
    rss_loaded = _rss_now_mb()
    fix_random_seed(SEED)

    def run(steps: int) -> tuple[float, float]:
        with tempfile.TemporaryDirectory(prefix="bench-upstream-") as tmp, torch.inference_mode():
            t = time.perf_counter()
            metrics = infer.generate_sentence(
                save_path=f"{tmp}/out.wav",
                prompt_text=spec["prompt_text"],
                prompt_wav=str(spec["prompt_wav"]),
                text=spec["text"],
                model=model,
                vocoder=vocoder,
                tokenizer=tokenizer,
                feature_extractor=features,
                num_step=steps,
                guidance_scale=GUIDANCE[variant],
                **extra,
            )
            return time.perf_counter() - t, float(metrics["wav_seconds"])

    run(1)
    elapsed, audio_s = run(int(spec["steps"]))
    return _finish({"load_s": load_s, "rss_loaded_mb": rss_loaded, "run_s": elapsed, "audio_s": audio_s})


def ours_torch_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement of our PyTorch path (``ZipVoiceEngine``, ``ENGINE=torch``), in our venv."""
    import torch

    from api.settings import Settings

    from .ours import measure_engine

    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    settings = Settings(
        num_threads=threads,
        allow_downloads=False,
        device="cpu",
        engine="torch",
        zipvoice_model_dir=Path(spec["model_root"]),
        vocos_model_dir=Path(spec["vocos_dir"]),
        cache_dir=Path(spec["cache_dir"]),
    )
    out = measure_engine(
        settings,
        spec["variant"],
        prompt_wav=Path(spec["prompt_wav"]),
        prompt_text=spec["prompt_text"],
        text=spec["text"],
        steps=int(spec["steps"]),
        digest_prefix="peer-torch",
    )
    return _finish(out)


def _spawn(cmd: list[str], out_path: Path, env: dict[str, str], cwd: Path, timeout: float) -> dict[str, Any]:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0 or not out_path.is_file():
        tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        return {"error": f"exit {proc.returncode}: {tail[-1] if tail else ''}"}
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result


# --------------------------------------------------------------------------------------------------
# the peers section's hooks
# --------------------------------------------------------------------------------------------------
@dataclass
class Upstream:
    """What the upstream sides need; ``error`` set when the venv could not be built."""

    src: Path
    python: Path | None
    model_root: Path  # our random checkpoints in upstream's layout: <model_root>/<variant>/model.pt
    onnx_dir: Path  # the int8 export of the distill checkpoint (+ model.json, tokens.txt)
    vocos_dir: Path
    cache_dir: Path
    timeout: float
    error: str | None = None


def add_args(ap: Any) -> None:
    ap.add_argument(
        "--upstream-venv",
        type=Path,
        help="scratch venv for the upstream rows (default <cache-dir>/upstream-venv)",
    )
    ap.add_argument(
        "--upstream-zipvoice-outputs",
        default="~5 s",
        help="output lengths of the PyTorch zipvoice (16 steps) upstream rows; empty: none",
    )


def setup(cfg: Any, onnx_dir: Path, vocos_dir: Path) -> Upstream | None:
    """``None`` without ``--upstream-src``; else the checkpoints and the scratch venv (built once)."""
    src = getattr(cfg, "upstream_src", None)
    if not src:
        return None
    from bench_lib.assets import ensure_assets

    from .harness import log

    model_root, _ = ensure_assets(cfg.cache_dir, cfg.zipvoice_size, tuple(STEPS))
    up = Upstream(
        src=Path(src).expanduser().resolve(),
        python=None,
        model_root=model_root,
        onnx_dir=onnx_dir,
        vocos_dir=vocos_dir,
        cache_dir=cfg.cache_dir,
        timeout=float(getattr(cfg, "worker_timeout", 1500.0)),
    )
    if not (up.src / "zipvoice" / "bin" / "infer_zipvoice_onnx.py").is_file():
        up.error = f"{up.src} is not a k2-fsa/ZipVoice checkout"
        return up
    try:
        up.python = ensure_venv(
            up.src, getattr(cfg, "upstream_venv", None) or cfg.cache_dir / "upstream-venv", log
        )
    except Exception as exc:  # the ours/sherpa rows still run
        up.error = f"scratch venv: {type(exc).__name__}: {exc}"
        log(f"upstream: {up.error}")
    return up


def sides(up: Upstream | None) -> tuple[str, ...]:
    """The sides of one configuration of the peers loop, in interleaving order."""
    if up is None or up.error:
        return ("ours", "sherpa")
    return ALL_SIDES


def measure(up: Upstream, spec: dict[str, Any]) -> dict[str, Any]:
    """One fresh-process measurement of an upstream side or of ours-torch (``spec`` as the peers
    loop builds it, plus ``variant``/``steps`` when not the distill default)."""
    from bench_lib.assets import PROMPT_TEXT, prompt_wav

    from . import REPO_ROOT

    side = spec["side"]
    variant = spec.get("variant", "zipvoice_distill")
    full = {
        **spec,
        "variant": variant,
        "steps": spec.get("steps", STEPS[variant]),
        "prompt_wav": str(prompt_wav()),
        "prompt_text": PROMPT_TEXT,
        "vocos_dir": str(up.vocos_dir),
        "cache_dir": str(up.cache_dir),
        "upstream_src": str(up.src),
        "model_root": str(up.model_root),
        "model_dir": str(up.onnx_dir if side == "upstream-onnx" else up.model_root / variant),
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    with tempfile.TemporaryDirectory(prefix="bench-upstream-") as tmp:
        out = Path(tmp) / "out.json"
        if side == "ours-torch":
            code = (
                "import json, sys; sys.path[:0] = [sys.argv[3], sys.argv[3] + '/scripts'];"
                "from scripts.bench.upstream import ours_torch_worker;"
                "open(sys.argv[2], 'w').write(json.dumps(ours_torch_worker(json.loads(sys.argv[1]))))"
            )
            cmd = [sys.executable, "-c", code, json.dumps(full), str(out), str(REPO_ROOT)]
            return _spawn(cmd, out, env, REPO_ROOT, up.timeout)
        assert up.python is not None
        for key in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(key, None)
        env.update({"HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"})
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(full), encoding="utf-8")
        cmd = [str(up.python), str(THIS), "--worker", str(spec_path), str(out)]
        return _spawn(cmd, out, env, Path(tmp), up.timeout)


def side_stats(results: list[dict[str, Any]]) -> dict[str, Any]:
    """A side's figures over its repeats (the same fields as the peers rows)."""
    from bench_lib.stats import summary

    ok = [r for r in results if "error" not in r]
    return {
        "rtf": summary([r["rtf"] for r in ok if r.get("rtf")]),
        "peak_rss_mb": summary([r["peak_rss_mb"] for r in ok]),
        "rss_loaded_mb": summary([r["rss_loaded_mb"] for r in ok if r.get("rss_loaded_mb")]),
        "audio_s": summary([r["audio_s"] for r in ok]),
        "errors": [r["error"] for r in results if "error" in r],
        "samples": results,
    }


def _median(row: dict[str, Any], side: str, key: str) -> float | None:
    value = ((row.get(side) or {}).get(key) or {}).get("median")
    return float(value) if value else None


def add_ratios(row: dict[str, Any]) -> None:
    """Speed (upstream RTF / ours) and RSS (ours / upstream) ratios of a row that has upstream sides."""
    for ours, theirs, prefix in (
        ("ours-torch", "upstream-torch", "torch"),
        ("ours", "upstream-onnx", "upstream_onnx"),
    ):
        o, u = _median(row, ours, "rtf"), _median(row, theirs, "rtf")
        if o and u:
            row[f"{prefix}_speed_ratio"] = u / o
        o, u = _median(row, ours, "peak_rss_mb"), _median(row, theirs, "peak_rss_mb")
        if o and u:
            row[f"{prefix}_rss_ratio"] = o / u


def _source_info(src: Path) -> str:
    commit = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return f"{src} (commit {commit})" if commit else f"{src} (not a git work tree: commit unknown)"


def finish(up: Upstream | None, cfg: Any, outputs: dict[str, int]) -> dict[str, Any] | str:
    """After the peers loop: the PyTorch zipvoice (16 steps) rows, interleaved ours-torch /
    upstream-torch, and what the report says about the upstream run."""
    if up is None:
        return "not run (no --upstream-src)"
    if up.error:
        return f"not run ({up.error})"
    from .harness import log, num, text_of

    labels = [o.strip() for o in str(getattr(cfg, "upstream_zipvoice_outputs", "")).split(",") if o.strip()]
    rows: list[dict[str, Any]] = []
    for threads in cfg.peer_threads:
        for label in labels:
            text = text_of(outputs[label])
            order = ("ours-torch", "upstream-torch")
            results: dict[str, list[dict[str, Any]]] = {s: [] for s in order}
            for rep in range(cfg.repeats):
                for side in order if rep % 2 == 0 else order[::-1]:
                    spec = {"side": side, "threads": threads, "text": text, "variant": "zipvoice"}
                    res = measure(up, spec)
                    log(
                        f"peers: {side} zipvoice {threads}t {label}: rtf {num(res.get('rtf'))} "
                        f"peak {num(res.get('peak_rss_mb'), 0)} MB {res.get('error', '')}"
                    )
                    results[side].append(res)
            row: dict[str, Any] = {
                "variant": "zipvoice",
                "steps": STEPS["zipvoice"],
                "threads": threads,
                "output": label,
                "text_chars": len(text),
                **{side: side_stats(r) for side, r in results.items()},
            }
            add_ratios(row)
            rows.append(row)
    return {
        "status": "run",
        "source": _source_info(up.src),
        "venv": str(up.python.parent.parent) if up.python else None,
        "torch_rows": rows,
    }


def _cell(row: dict[str, Any], side: str, key: str, digits: int = 2) -> str:
    from bench_lib.stats import fmt

    from .harness import num

    stats = (row.get(side) or {}).get(key) or {}
    return fmt(stats) if key == "rtf" else num(stats.get("median"), digits)


def render_lines(res: dict[str, Any], variant: str, steps: int) -> list[str]:
    """The upstream tables under the peers table (or the reason they are not there)."""
    from .harness import num

    up = res.get("upstream")
    if not isinstance(up, dict):
        return [f"Upstream k2-fsa/ZipVoice (PyTorch and ONNX): {up or 'not run'}."]
    torch_rows = [
        {**r, "variant": variant, "steps": steps} for r in res.get("rows", []) if "upstream-torch" in r
    ]
    torch_rows += up.get("torch_rows", [])
    lines = [
        f"Upstream k2-fsa/ZipVoice from `{up['source']}`, in a scratch venv (our torch and onnxruntime, "
        "a torchaudio stand-in computing the same mel with torch.stft). Upstream's timer wraps its whole "
        "`generate_sentence` call (prompt load, silence trimming, features, tokenization, sampling, "
        "vocoder, wav write); ours the engine's `synthesize` (prompt features and tokens recomputed, "
        "sampling, vocoder).",
        "",
        "PyTorch (goal 2): ours (`ZipVoiceEngine`, ENGINE=torch) vs upstream `infer_zipvoice.generate_sentence`, same `model.pt`:",
        "",
        "| variant | steps | threads | output | ours RTF | upstream RTF | speed ratio | ours peak RSS | upstream peak RSS | RSS ours / upstream | audio s (ours / upstream) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in torch_rows:
        lines.append(
            f"| {r['variant']} | {r['steps']} | {r['threads']} | {r['output']} | {_cell(r, 'ours-torch', 'rtf')} "
            f"| {_cell(r, 'upstream-torch', 'rtf')} | {num(r.get('torch_speed_ratio'))}× "
            f"| {_cell(r, 'ours-torch', 'peak_rss_mb', 0)} | {_cell(r, 'upstream-torch', 'peak_rss_mb', 0)} "
            f"| {num(r.get('torch_rss_ratio'))} | {_cell(r, 'ours-torch', 'audio_s', 1)} / {_cell(r, 'upstream-torch', 'audio_s', 1)} |"
        )
        lines += _errors(r, ("ours-torch", "upstream-torch"), 11)
    onnx_rows = [r for r in res.get("rows", []) if "upstream-onnx" in r]
    lines += [
        "",
        f"ONNX int8 (goal 3): ours vs upstream `infer_zipvoice_onnx.generate_sentence` on the same int8 files ({variant}, {steps} steps):",
        "",
        "| threads | output | ours RTF | upstream ONNX RTF | speed ratio | ours peak RSS | upstream peak RSS | RSS ours / upstream | audio s (ours / upstream) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in onnx_rows:
        lines.append(
            f"| {r['threads']} | {r['output']} | {_cell(r, 'ours', 'rtf')} | {_cell(r, 'upstream-onnx', 'rtf')} "
            f"| {num(r.get('upstream_onnx_speed_ratio'))}× | {_cell(r, 'ours', 'peak_rss_mb', 0)} "
            f"| {_cell(r, 'upstream-onnx', 'peak_rss_mb', 0)} | {num(r.get('upstream_onnx_rss_ratio'))} "
            f"| {_cell(r, 'ours', 'audio_s', 1)} / {_cell(r, 'upstream-onnx', 'audio_s', 1)} |"
        )
        lines += _errors(r, ("upstream-onnx",), 9)
    return lines


def _errors(row: dict[str, Any], names: tuple[str, ...], columns: int) -> list[str]:
    out = []
    for side in names:
        errors = (row.get(side) or {}).get("errors") or []
        if errors:
            out.append(f"|  | {side} errors: {'; '.join(errors)} |" + " |" * (columns - 2))
    return out


def goals(res: dict[str, Any], variant: str) -> list[dict[str, Any]]:
    """Goal 2 (PyTorch ≥ 1.3× upstream) and goal 3's upstream half (ONNX ≥ 1.3× upstream ONNX)."""
    from .harness import num

    up = res.get("upstream")
    if not isinstance(up, dict):
        return []
    load = res.get("loadavg_after")
    reason = (
        "measured side by side in one interleaved run (same checkpoint, prompt, text, steps, threads)"
        + (f"; load average {load[0]} at the section's end" if load else "")
    )
    out = []
    torch_rows = [{**r, "variant": variant} for r in res.get("rows", []) if "upstream-torch" in r]
    for r in torch_rows + up.get("torch_rows", []):
        ratio = r.get("torch_speed_ratio")
        out.append(
            {
                "goal": f"PyTorch speed vs upstream k2-fsa/ZipVoice ({r['variant']}, {r['threads']} thread(s), {r['output']})",
                "target": f"≥ {GOAL_TORCH:.1f}×",
                "measured": f"{num(ratio)}×",
                "met": None if ratio is None else ratio >= GOAL_TORCH,
                "reason": "" if ratio is None or ratio >= GOAL_TORCH else reason,
            }
        )
    for r in res.get("rows", []):
        if "upstream-onnx" not in r:
            continue
        ratio = r.get("upstream_onnx_speed_ratio")
        out.append(
            {
                "goal": f"ONNX int8 speed vs upstream infer_zipvoice_onnx ({r['threads']} thread(s), {r['output']})",
                "target": f"≥ {GOAL_ONNX:.1f}×",
                "measured": f"{num(ratio)}×",
                "met": None if ratio is None else ratio >= GOAL_ONNX,
                "reason": "" if ratio is None or ratio >= GOAL_ONNX else reason,
            }
        )
    return out


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--worker":
    # inside the scratch venv: nothing of this project on the path (this file's folder holds modules
    # named like common ones: engine, server, cli)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != THIS.parent]
    _spec = json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
    Path(sys.argv[3]).write_text(json.dumps(upstream_worker(_spec)), encoding="utf-8")
