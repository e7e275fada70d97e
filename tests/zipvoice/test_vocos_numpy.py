"""numpy Vocos (``vocos_np``) vs the golden tiny-Vocos outputs and vs the torch vocoder; torch-free run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import yaml

from api.zipvoice.torch_pickle import load_state_dict
from api.zipvoice.vocos_np import NumpyVocos, erf, gelu, parse_config

ATOL = 1e-5  # README section 4: vocoder wav; the same value tests/zipvoice/test_vocos_golden.py uses
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def vocos_dir(reference_dir: Path) -> Path:
    return reference_dir / "vocos-mel-24khz-tiny"


@pytest.fixture(scope="module")
def vocos(vocos_dir: Path) -> NumpyVocos:
    return NumpyVocos.from_dir(vocos_dir)


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "golden" / "vocoder.npz") as data:
        return {k: data[k] for k in data.files}


def _hop(vocos_dir: Path) -> int:
    config = yaml.safe_load((vocos_dir / "config.yaml").read_text(encoding="utf-8"))
    return int(config["head"]["init_args"]["hop_length"])


def test_backbone_matches_golden(vocos: NumpyVocos, golden: dict[str, np.ndarray]) -> None:
    out = vocos.backbone(golden["mel"])
    assert out.shape == golden["backbone_out"].shape and out.dtype == np.float32
    np.testing.assert_allclose(out, golden["backbone_out"], rtol=0, atol=ATOL)


def test_decode_matches_golden(vocos: NumpyVocos, vocos_dir: Path, golden: dict[str, np.ndarray]) -> None:
    wav = vocos.decode(golden["mel"])
    frames = golden["mel"].shape[-1]
    assert wav.shape == golden["wav"].shape == (golden["mel"].shape[0], (frames - 1) * _hop(vocos_dir))
    assert wav.dtype == np.float32
    np.testing.assert_allclose(wav, golden["wav"], rtol=0, atol=ATOL)
    # a 2-D mel gives a 1-D waveform
    np.testing.assert_array_equal(vocos.decode(golden["mel"][0]), wav[0])


def test_e2e_vocoder_out_matches_golden(reference_dir: Path, vocos: NumpyVocos) -> None:
    cases = json.loads((reference_dir / "golden" / "cases.json").read_text(encoding="utf-8"))["e2e_cases"]
    assert cases
    for case in cases:
        with np.load(reference_dir / "golden" / f"e2e_{case}.npz") as g:
            out = vocos.decode(g["vocoder_in"])
            assert out.shape == g["vocoder_out"].shape
            np.testing.assert_allclose(out, g["vocoder_out"], rtol=0, atol=ATOL, err_msg=case)


def test_short_and_bad_inputs(vocos: NumpyVocos) -> None:
    assert vocos.decode(np.full((1, vocos.n_mels, 1), -5.0, np.float32)).shape == (1, 0)
    assert vocos.decode(np.full((vocos.n_mels, 2), -5.0, np.float32)).shape == (vocos.hop_length,)
    for bad in (
        np.zeros((1, 100, 0)),
        np.zeros((1, 80, 5)),
        np.zeros((2, 2, 100, 5)),
        np.full((1, 100, 3), np.nan),
    ):
        with pytest.raises(ValueError):
            vocos.decode(bad)


def test_magnitude_is_capped(vocos: NumpyVocos) -> None:
    wav = vocos.decode(np.full((1, 100, 8), 50.0, np.float32))  # absurd input: finite, bounded output
    assert np.isfinite(wav).all()


def test_erf_and_gelu_accuracy() -> None:
    x = np.linspace(-12.0, 12.0, 96001, dtype=np.float32)
    ref_erf = np.array([math.erf(float(v)) for v in x])
    assert float(np.abs(erf(x) - ref_erf).max()) < 1e-6
    ref_gelu = np.array([0.5 * float(v) * (1.0 + math.erf(float(v) / math.sqrt(2.0))) for v in x])
    err = np.abs(gelu(x).astype(np.float64) - ref_gelu)
    assert float((err / np.maximum(1.0, np.abs(x))).max()) < 1e-6
    strided = x[:96000].reshape(4, -1)[:, ::3]  # non-contiguous input, several blocks
    assert gelu(x).dtype == np.float32
    np.testing.assert_array_equal(gelu(strided), gelu(np.ascontiguousarray(strided)))


def test_strict_weights_and_config(vocos_dir: Path) -> None:
    config = yaml.safe_load((vocos_dir / "config.yaml").read_text(encoding="utf-8"))
    state = load_state_dict(vocos_dir / "pytorch_model.bin")
    missing = dict(state)
    missing.pop("backbone.convnext.0.gamma")
    with pytest.raises(ValueError, match="missing"):
        NumpyVocos.from_state_dict(config, missing)
    with pytest.raises(ValueError, match="unexpected"):
        NumpyVocos.from_state_dict(config, {**state, "extra.weight": np.zeros(1, np.float32)})
    reshaped = {**state, "head.out.bias": state["head.out.bias"][:-1]}
    with pytest.raises(ValueError, match="shape"):
        NumpyVocos.from_state_dict(config, reshaped)
    bad_class = {**config, "head": {**config["head"], "class_path": "vocos.heads.IMDCTCosHead"}}
    with pytest.raises(ValueError, match="unsupported head"):
        parse_config(bad_class)
    ada = json.loads(json.dumps(config))
    ada["backbone"]["init_args"]["adanorm_num_embeddings"] = 4
    with pytest.raises(ValueError, match="AdaLayerNorm"):
        parse_config(ada)


def test_safetensors_weights(tmp_path: Path, vocos_dir: Path, golden: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    (tmp_path / "config.yaml").write_bytes((vocos_dir / "config.yaml").read_bytes())
    save_file(load_state_dict(vocos_dir / "pytorch_model.bin"), str(tmp_path / "model.safetensors"))
    wav = NumpyVocos.from_dir(tmp_path).decode(golden["mel"])
    np.testing.assert_allclose(wav, golden["wav"], rtol=0, atol=ATOL)
    with pytest.raises(FileNotFoundError):
        NumpyVocos.from_dir(tmp_path / "nowhere")


# -- equality with the torch vocoder ---------------------------------------------------------


@pytest.mark.parametrize(("batch", "frames"), [(1, 2), (2, 3), (2, 50), (1, 400)])
def test_matches_torch_on_random_mels(vocos: NumpyVocos, vocos_dir: Path, batch: int, frames: int) -> None:
    torch = pytest.importorskip("torch")
    from api.zipvoice.vocos import load_vocos

    ref_model = load_vocos(vocos_dir)
    mel = (np.random.default_rng(frames).standard_normal((batch, 100, frames)) * 2 - 5).astype(np.float32)
    np.testing.assert_allclose(
        vocos.backbone(mel), ref_model.backbone(torch.from_numpy(mel)).detach().numpy(), rtol=0, atol=ATOL
    )
    ref = ref_model.decode(torch.from_numpy(mel)).numpy()
    ours = vocos.decode(mel)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=ATOL)


def test_analysis_synthesis_matches_torch(vocos: NumpyVocos, vocos_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from api.zipvoice.vocos import load_vocos

    wav = (np.random.default_rng(3).standard_normal((2, 2560)) * 0.1).astype(np.float32)
    ref_model = load_vocos(vocos_dir)
    mel = vocos.feature_extractor(wav)
    assert mel.shape == (2, vocos.n_mels, 1 + 2560 // vocos.hop_length)
    np.testing.assert_allclose(
        mel, ref_model.feature_extractor(torch.from_numpy(wav)).numpy(), rtol=0, atol=1e-4
    )
    out = vocos(wav)
    assert out.shape == (2, 2560)
    np.testing.assert_allclose(out, ref_model(torch.from_numpy(wav)).numpy(), rtol=0, atol=ATOL)


def _real_size_config(vocos_dir: Path) -> dict[str, Any]:
    """The tiny fixture's config with the official ``charactr/vocos-mel-24khz`` sizes."""
    config: dict[str, Any] = yaml.safe_load((vocos_dir / "config.yaml").read_text(encoding="utf-8"))
    config["backbone"]["init_args"].update(dim=512, intermediate_dim=1536, num_layers=8)
    config["head"]["init_args"]["dim"] = 512
    return config


def test_real_size_random_checkpoint_matches_torch(tmp_path: Path, vocos_dir: Path) -> None:
    """A ``torch.save``'d real-size Vocos with random weights: loaded by our reader, same waveform."""
    torch = pytest.importorskip("torch")
    from api.zipvoice.vocos import build_vocos

    config = _real_size_config(vocos_dir)
    torch.manual_seed(0)
    model = build_vocos(config).eval()
    with torch.no_grad():  # non-trivial layer scales so every block matters
        for block in model.backbone.convnext:
            cast(Any, block).gamma.uniform_(0.1, 0.5)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    ours = NumpyVocos.from_dir(tmp_path)
    mel = (np.random.default_rng(5).standard_normal((1, 100, 120)) - 4).astype(np.float32)
    ref = model.decode(torch.from_numpy(mel)).numpy()
    np.testing.assert_allclose(ours.decode(mel), ref, rtol=0, atol=ATOL)


# -- no torch at all --------------------------------------------------------------------------

_NO_TORCH_SCRIPT = textwrap.dedent(
    """
    import json, sys, wave
    sys.modules["torch"] = None  # any "import torch" now raises ImportError
    from pathlib import Path
    import numpy as np
    from api.zipvoice import features_np, torch_pickle, vocos_np

    ref = Path(sys.argv[1])
    state = torch_pickle.load_state_dict(ref / "vocos-mel-24khz-tiny" / "pytorch_model.bin")
    vocos = vocos_np.NumpyVocos.from_dir(ref / "vocos-mel-24khz-tiny")
    with np.load(ref / "golden" / "vocoder.npz") as g:
        vocoder_err = float(np.abs(vocos.decode(g["mel"]) - g["wav"]).max())
    name = sorted(json.loads((ref / "golden" / "cases.json").read_text())["features"])[0]
    with wave.open(str(ref / "audio" / f"{name}.wav"), "rb") as wf:
        raw = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
        wav = raw.reshape(-1, wf.getnchannels()).T.astype(np.float32) / 32768.0
        sr = wf.getframerate()
    feats = features_np.VocosFbank(wav.shape[0]).extract(wav, sr)
    with np.load(ref / "golden" / "features.npz") as g:
        feature_err = float(np.abs(feats - g[name + "_fbank"]).max())
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    print(json.dumps({"tensors": len(state), "vocoder_err": vocoder_err, "feature_err": feature_err,
                      "torch_modules": [m for m in loaded if sys.modules[m] is not None]}))
    """
)


def test_modules_run_with_torch_blocked(reference_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH_SCRIPT, str(reference_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["torch_modules"] == []
    assert result["tensors"] > 0
    assert result["vocoder_err"] <= ATOL
    assert result["feature_err"] <= 2e-3  # README section 4 log-mel tolerance
