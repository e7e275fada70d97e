"""Our Vocos vocoder vs the reference tiny Vocos ``decode`` (README 2 and 3d)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from api.zipvoice.vocos import Vocos, build_vocos, load_vocos

ATOL = 1e-5  # README section 4: vocoder wav


@pytest.fixture(scope="module")
def vocos(reference_dir: Path) -> Vocos:
    return load_vocos(reference_dir / "vocos-mel-24khz-tiny")


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "golden" / "vocoder.npz") as data:
        return {k: data[k] for k in data.files}


def test_state_dict_keys_match_checkpoint(reference_dir: Path, vocos: Vocos) -> None:
    state = torch.load(
        reference_dir / "vocos-mel-24khz-tiny" / "pytorch_model.bin", map_location="cpu", weights_only=True
    )
    assert set(vocos.state_dict()) == set(state)
    assert len(state) == 29


def test_backbone(vocos: Vocos, golden: dict[str, np.ndarray]) -> None:
    with torch.inference_mode():
        out = vocos.backbone(torch.from_numpy(golden["mel"]))
    assert tuple(out.shape) == golden["backbone_out"].shape
    np.testing.assert_allclose(out.numpy(), golden["backbone_out"], rtol=0, atol=ATOL)


def test_decode(vocos: Vocos, golden: dict[str, np.ndarray]) -> None:
    wav = vocos.decode(torch.from_numpy(golden["mel"]))
    assert tuple(wav.shape) == golden["wav"].shape == (1, (60 - 1) * 256)
    np.testing.assert_allclose(wav.numpy(), golden["wav"], rtol=0, atol=ATOL)


def test_e2e_vocoder_out(reference_dir: Path, vocos: Vocos) -> None:
    for case in ("e2e_zipvoice", "e2e_zipvoice_distill"):
        with np.load(reference_dir / "golden" / f"{case}.npz") as g:
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
    assert len(shapes) == 2 + 4 + 8 * 9 + 2 + 3  # fe, embed+norm, blocks, final norm, head
    wav = model.decode(torch.randn(1, 100, 5) - 4)
    assert wav.shape == (1, 4 * 256)


def test_analysis_synthesis_shapes(vocos: Vocos) -> None:
    wav = torch.randn(2, 2560) * 0.1
    mel = vocos.feature_extractor(wav)
    assert mel.shape == (2, 100, 11)
    assert vocos(wav).shape == (2, 2560)
