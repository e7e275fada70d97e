"""The upstream (k2-fsa/ZipVoice) side of the peers benchmark section (``scripts/bench/upstream.py``).

Without a checkout: the torchaudio stand-in that the scratch venv gets (its mel equals ours and the
reference's, its buffers load Vocos' state dict, WAV load/save), the ``uv`` commands that build the
venv from upstream's ``requirements.txt``, the interleaving order, the ratios, and the tables and
goals the section writes with upstream rows. With a checkout (``ZIPVOICE_UPSTREAM_SRC``, an external
folder, never part of this repository): the scratch venv is built and both upstream workers run on
tiny checkpoints.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import wave
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from bench import peers, upstream  # noqa: E402


def _standin(tmp_path: Path) -> ModuleType:
    """The stand-in written as the venv gets it, imported under another name (never ``torchaudio``)."""
    pkg = upstream.write_standin(tmp_path)
    name = f"standin_torchaudio_{abs(hash(str(tmp_path)))}"
    spec = importlib.util.spec_from_file_location(
        name, pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _vocos_mel(ta: ModuleType) -> Any:
    # the call of upstream's VocosFbank and of vocos' MelSpectrogramFeatures
    return ta.transforms.MelSpectrogram(
        sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100, center=True, power=1
    )


def test_standin_mel_equals_our_features(tmp_path: Path) -> None:
    from api.zipvoice.features import MelSpectrogram

    ta = _standin(tmp_path)
    t = torch.arange(24000 * 2) / 24000
    signal = 0.3 * torch.sin(2 * math.pi * (200 + 900 * t) * t) + 0.05 * torch.randn(
        t.shape, generator=torch.Generator().manual_seed(0)
    )
    theirs = _vocos_mel(ta)(signal[None])
    ours = MelSpectrogram()(signal[None])
    assert theirs.shape == ours.shape == (1, 100, 1 + signal.numel() // 256)
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-6)
    # same module layout and buffer names as torchaudio's: Vocos' state dict loads into it
    assert (
        set(_vocos_mel(ta).state_dict())
        == set(MelSpectrogram().state_dict())
        == {
            "spectrogram.window",
            "mel_scale.fb",
        }
    )


def test_standin_matches_the_reference_features(tmp_path: Path, reference_dir: Path) -> None:
    """The reference's own torchaudio figures: the prompt's log-mel and the tiny Vocos' buffers."""
    ta = _standin(tmp_path)
    wav, sr = ta.load(reference_dir / "audio" / "prompt.wav")
    assert sr == 24000 and wav.dtype == torch.float32 and wav.shape[0] == 1
    logmel = _vocos_mel(ta)(wav).clamp(min=1e-7).log()
    with np.load(reference_dir / "golden" / "features.npz") as data:
        expected = torch.from_numpy(data["prompt_logmel_full"]).float()
    assert logmel.shape == expected.shape
    torch.testing.assert_close(logmel, expected, rtol=1e-4, atol=1e-4)
    state = torch.load(
        reference_dir / "vocos-mel-24khz-tiny" / "pytorch_model.bin", map_location="cpu", weights_only=True
    )
    mel_state = _vocos_mel(ta).state_dict()
    for key in ("spectrogram.window", "mel_scale.fb"):
        torch.testing.assert_close(mel_state[key], state[f"feature_extractor.mel_spec.{key}"])


def test_standin_wav_roundtrip_and_resample(tmp_path: Path) -> None:
    ta = _standin(tmp_path)
    x = torch.stack([torch.linspace(-0.9, 0.9, 480), torch.linspace(0.5, -0.5, 480)])
    ta.save(tmp_path / "x.wav", x, sample_rate=24000)
    with wave.open(str(tmp_path / "x.wav")) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes()) == (2, 24000, 2, 480)
    y, sr = ta.load(tmp_path / "x.wav")
    assert sr == 24000 and y.shape == x.shape
    assert float((y - x).abs().max()) < 2 / 32767
    assert ta.transforms.Resample(orig_freq=24000, new_freq=24000)(y) is y
    with pytest.raises(NotImplementedError):
        ta.transforms.Resample(orig_freq=16000, new_freq=24000)(y)


REQUIREMENTS = """--find-links https://example.invalid/piper_phonemize.html

torch
torchaudio
numpy
lhotse
vocos
pydub

# Normalization
inflect  # comment
piper_phonemize
setuptools<81
"""


def test_venv_commands(tmp_path: Path) -> None:
    src = tmp_path / "ZipVoice"
    src.mkdir()
    (src / "requirements.txt").write_text(REQUIREMENTS)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    venv = tmp_path / "venv"
    cmds = upstream.venv_commands(src, venv, "/usr/bin/python3.11", "2.13.0+cpu", "1.32.0", wheels)
    assert cmds[0] == ["uv", "venv", "--clear", "--python", "/usr/bin/python3.11", str(venv)]
    assert all(
        c[:4] == ["uv", "pip", "install", "--python"] and c[4] == str(venv / "bin" / "python")
        for c in cmds[1:]
    )
    flat = [arg for c in cmds for arg in c]
    assert not any("torchaudio" in a for a in flat)  # the stand-in replaces it
    assert not any("find-links" in a or "example.invalid" in a for a in flat)
    assert cmds[1][5:] == [str(wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")]
    normal = cmds[2][5:]
    assert {
        "numpy",
        "lhotse",
        "pydub",
        "inflect",
        "piper_phonemize",
        "setuptools<81",
        "onnxruntime==1.32.0",
    } <= set(normal)
    assert "torch" not in normal and "vocos" not in normal
    assert cmds[3][5:] == ["--no-deps", "vocos", "encodec"]
    # without a local wheel: the same torch version from the CPU index
    cmds = upstream.venv_commands(src, venv, "python3", "2.13.0+cpu", None, tmp_path / "none")
    assert cmds[1][5:7] == ["torch==2.13.0", "--index-url"] and "onnxruntime" in cmds[2]


def test_sides_order_and_ratios(tmp_path: Path) -> None:
    assert upstream.sides(None) == ("ours", "sherpa")
    up = upstream.Upstream(tmp_path, None, tmp_path, tmp_path, tmp_path, tmp_path, 1.0, error="no venv")
    assert upstream.sides(up) == ("ours", "sherpa")
    up.error = None
    order = upstream.sides(up)
    assert order == ("ours-torch", "upstream-torch", "ours", "upstream-onnx", "sherpa")
    assert set(upstream.SIDES) == set(order) - {"ours", "sherpa"}
    row = _row()
    assert row["torch_speed_ratio"] == pytest.approx(4.0 / 3.0)
    assert row["torch_rss_ratio"] == pytest.approx(1000 / 1300)
    assert row["upstream_onnx_speed_ratio"] == pytest.approx(1.8 / 1.5)
    assert row["upstream_onnx_rss_ratio"] == pytest.approx(800 / 780)


def _side(rtf: float, rss: float, error: str | None = None) -> dict[str, Any]:
    samples = [{"rtf": rtf, "peak_rss_mb": rss, "rss_loaded_mb": rss / 2, "audio_s": 5.0}]
    return upstream.side_stats(samples + ([{"error": error}] if error else []))


def _row(threads: int = 1) -> dict[str, Any]:
    row: dict[str, Any] = {
        "threads": threads,
        "output": "~5 s",
        "text_chars": 90,
        "steps": 8,
        "ours-torch": _side(3.0, 1000),
        "upstream-torch": _side(4.0, 1300),
        "ours": _side(1.5, 800),
        "upstream-onnx": _side(1.8, 780, error="exit 1: boom"),
        "sherpa": _side(2.0, 400),
        "speed_ratio": 2.0 / 1.5,
        "rss_ratio": 2.0,
    }
    upstream.add_ratios(row)
    return row


def test_render_and_goals_with_upstream_rows() -> None:
    zipvoice_row = {
        "variant": "zipvoice",
        "steps": 16,
        "threads": 2,
        "output": "~5 s",
        "text_chars": 90,
        "ours-torch": _side(7.0, 1050),
        "upstream-torch": _side(10.5, 1290),
    }
    upstream.add_ratios(zipvoice_row)
    res = {
        "rows": [_row(1)],
        "variant": "zipvoice_distill",
        "precision": "int8",
        "upstream": {
            "status": "run",
            "source": "/src/ZipVoice (commit abc)",
            "venv": "/v",
            "torch_rows": [zipvoice_row],
        },
        "loadavg_after": [1.5, 1.0, 1.0],
    }
    md = peers.render(res)
    assert "PyTorch (goal 2)" in md and "ONNX int8 (goal 3)" in md and "/src/ZipVoice (commit abc)" in md
    assert "| zipvoice_distill | 8 | 1 | ~5 s | 3.00 (n=1) | 4.00 (n=1) | 1.33× | 1000 | 1300 | 0.77 |" in md
    assert "| zipvoice | 16 | 2 | ~5 s | 7.00 (n=1) | 10.50 (n=1) | 1.50× |" in md
    assert "| 1 | ~5 s | 1.50 (n=1) | 1.80 (n=1) | 1.20× | 800 | 780 | 1.03 |" in md
    assert "upstream-onnx errors: exit 1: boom" in md
    table_rows = [ln for ln in md.splitlines() if ln.startswith("|")]
    widths = {ln.count("|") for ln in table_rows if "upstream RTF" in ln or "zipvoice" in ln}
    assert len(widths) == 1  # the torch table's rows have as many cells as its header
    rows = peers.goals(res, lambda _: "load note")
    by_goal = {g["goal"]: g for g in rows}
    torch_distill = by_goal["PyTorch speed vs upstream k2-fsa/ZipVoice (zipvoice_distill, 1 thread(s), ~5 s)"]
    assert (torch_distill["measured"], torch_distill["met"]) == ("1.33×", True)
    torch_zv = by_goal["PyTorch speed vs upstream k2-fsa/ZipVoice (zipvoice, 2 thread(s), ~5 s)"]
    assert torch_zv["met"] is True
    onnx = by_goal["ONNX int8 speed vs upstream infer_zipvoice_onnx (1 thread(s), ~5 s)"]
    assert (onnx["measured"], onnx["met"]) == ("1.20×", False) and "interleaved" in onnx["reason"]
    # the sherpa goals are still there
    assert any(g["goal"].startswith("ONNX int8 peak RSS ≤ sherpa-onnx") for g in rows)


def test_render_without_upstream() -> None:
    """A report without upstream rows (no --upstream-src, or an older JSON) says why."""
    row = {
        k: v for k, v in _row().items() if k in ("threads", "output", "text_chars", "steps", "ours", "sherpa")
    }
    for status in ("not run (no --upstream-src)", "not run (scratch venv: RuntimeError: x)"):
        res = {"rows": [row], "variant": "zipvoice_distill", "upstream": status}
        md = peers.render(res)
        assert f"Upstream k2-fsa/ZipVoice (PyTorch and ONNX): {status}." in md and "goal 2" not in md
        assert not [g for g in peers.goals(res, lambda _: "") if "upstream" in g["goal"]]
    cfg = argparse.Namespace(upstream_src=None)
    assert upstream.setup(cfg, Path("."), Path(".")) is None
    assert upstream.finish(None, cfg, peers.OUTPUTS) == "not run (no --upstream-src)"


def test_ours_torch_worker_on_a_tiny_checkpoint(tmp_path: Path, reference_dir: Path) -> None:
    """Our side of the PyTorch comparison: ZipVoiceEngine with ENGINE=torch in a fresh process."""
    from api.zipvoice.model.random_checkpoint import write_random_checkpoint

    root = tmp_path / "models"
    tokens = reference_dir / "models" / "zipvoice" / "tokens.txt"
    write_random_checkpoint(root / "zipvoice_distill", "zipvoice_distill", "tiny", tokens, seed=0)
    up = upstream.Upstream(
        tmp_path, None, root, tmp_path, reference_dir / "vocos-mel-24khz-tiny", tmp_path / "cache", 600.0
    )
    text = "The old lighthouse stood at the edge of the cliff."
    res = upstream.measure(up, {"side": "ours-torch", "threads": 1, "text": text, "steps": 2})
    assert "error" not in res, res
    assert res["audio_s"] > 0.5 and res["rtf"] > 0 and res["peak_rss_mb"] >= res["rss_loaded_mb"] > 0


# --------------------------------------------------------------------------------------------------
# with a k2-fsa/ZipVoice checkout (opt-in: an external folder)
# --------------------------------------------------------------------------------------------------
UPSTREAM_SRC = os.environ.get(upstream.ENV_SRC)


@pytest.mark.slow
@pytest.mark.skipif(not UPSTREAM_SRC, reason=f"{upstream.ENV_SRC} (a k2-fsa/ZipVoice checkout) not given")
def test_upstream_workers_on_tiny_checkpoints(tmp_path: Path, reference_dir: Path) -> None:
    from api.zipvoice.model.random_checkpoint import write_random_checkpoint
    from api.zipvoice.onnx_export import export_onnx

    cache = Path(os.environ.get("ZIPVOICE_UPSTREAM_VENV_CACHE", "/tmp/zipvoice-bench-cache"))
    python = upstream.ensure_venv(Path(UPSTREAM_SRC), cache / "upstream-venv", print)
    tokens = reference_dir / "models" / "zipvoice" / "tokens.txt"
    root = tmp_path / "models"
    write_random_checkpoint(root / "zipvoice_distill", "zipvoice_distill", "tiny", tokens, seed=0)
    onnx_dir = tmp_path / "onnx"
    export_onnx(root / "zipvoice_distill", onnx_dir, fp32=False)
    for f in ("model.json", "tokens.txt"):
        (onnx_dir / f).write_bytes((root / "zipvoice_distill" / f).read_bytes())
    up = upstream.Upstream(
        Path(UPSTREAM_SRC).resolve(),
        python,
        root,
        onnx_dir,
        reference_dir / "vocos-mel-24khz-tiny",
        tmp_path,
        600.0,
    )
    text = "The old lighthouse stood at the edge of the cliff."
    for side in ("upstream-torch", "upstream-onnx"):
        res = upstream.measure(up, {"side": side, "threads": 1, "text": text, "steps": 2})
        assert "error" not in res, res
        assert res["audio_s"] > 0.5 and res["rtf"] > 0 and res["peak_rss_mb"] >= res["rss_loaded_mb"] > 0
