"""Our Vocos vocoder vs the reference tiny Vocos ``decode`` (README 2 and 3d)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from api.zipvoice.vocos import Vocos, build_vocos, load_vocos
from tests.zipvoice import golden

ATOL = 1e-5  # README section 4: vocoder wav


@pytest.fixture(scope="module")
def vocos(reference_dir: Path) -> Vocos:
    return load_vocos(reference_dir / golden.VOCODER_DIR)


@pytest.fixture(scope="module")
def config(reference_dir: Path) -> dict[str, Any]:
    return golden.vocoder_config(reference_dir)


@pytest.fixture(scope="module")
def voc(reference_dir: Path) -> dict[str, np.ndarray]:
    return golden.load_npz(reference_dir, "vocoder")


def test_state_dict_keys_match_checkpoint(reference_dir: Path, vocos: Vocos, config: dict[str, Any]) -> None:
    state = torch.load(
        reference_dir / golden.VOCODER_DIR / "pytorch_model.bin", map_location="cpu", weights_only=True
    )
    assert set(vocos.state_dict()) == set(state)
    assert len(state) == golden.vocos_key_count(config["backbone"]["init_args"]["num_layers"])


def test_backbone(vocos: Vocos, voc: dict[str, np.ndarray]) -> None:
    with torch.inference_mode():
        out = vocos.backbone(torch.from_numpy(voc["mel"]))
    assert tuple(out.shape) == voc["backbone_out"].shape
    np.testing.assert_allclose(out.numpy(), voc["backbone_out"], rtol=0, atol=ATOL)


def test_decode(vocos: Vocos, voc: dict[str, np.ndarray], config: dict[str, Any]) -> None:
    wav = vocos.decode(torch.from_numpy(voc["mel"]))
    hop = config["head"]["init_args"]["hop_length"]
    frames = voc["mel"].shape[-1]
    assert tuple(wav.shape) == voc["wav"].shape == (1, (frames - 1) * hop)  # ISTFT, center=True
    np.testing.assert_allclose(wav.numpy(), voc["wav"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("case", golden.e2e_case_names())
def test_e2e_vocoder_out(reference_dir: Path, vocos: Vocos, case: str) -> None:
    g = golden.load_e2e(reference_dir, case)
    out = vocos.decode(torch.from_numpy(g["vocoder_in"]))
    assert tuple(out.shape) == g["vocoder_out"].shape
    np.testing.assert_allclose(out.numpy(), g["vocoder_out"], rtol=0, atol=ATOL)


def test_real_size_config_builds() -> None:
    """The real ``charactr/vocos-mel-24khz`` sizes (dim 512, 1536, 8 layers)."""
    config = {
        "feature_extractor": {
            "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
            "init_args": {
                "sample_rate": 24000,
                "n_fft": 1024,
                "hop_length": 256,
                "n_mels": 100,
                "padding": "center",
            },
        },
        "backbone": {
            "class_path": "vocos.models.VocosBackbone",
            "init_args": {"input_channels": 100, "dim": 512, "intermediate_dim": 1536, "num_layers": 8},
        },
        "head": {
            "class_path": "vocos.heads.ISTFTHead",
            "init_args": {"dim": 512, "n_fft": 1024, "hop_length": 256, "padding": "center"},
        },
    }
    model = build_vocos(config).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["backbone.convnext.7.pwconv1.weight"] == (1536, 512)
    assert shapes["head.out.weight"] == (1026, 512)
    assert shapes["feature_extractor.mel_spec.mel_scale.fb"] == (513, 100)
    assert len(shapes) == golden.vocos_key_count(8) == 2 + 4 + 8 * 9 + 2 + 3
    wav = model.decode(torch.randn(1, 100, 5) - 4)
    assert wav.shape == (1, 4 * 256)


def test_analysis_synthesis_shapes(vocos: Vocos, config: dict[str, Any]) -> None:
    features = config["feature_extractor"]["init_args"]
    hop = features["hop_length"]
    wav = torch.randn(2, 10 * hop) * 0.1
    mel = vocos.feature_extractor(wav)
    assert mel.shape == (2, features["n_mels"], 11)  # center=True: 1 + samples // hop frames
    assert vocos(wav).shape == (2, 10 * hop)
