"""Checkpoint loading: strict keys, tensors-only unpickling, formats, random checkpoints."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil
from pathlib import Path

import pytest
import torch

from api.zipvoice.model.checkpoint import infer_variant, load_model, read_tokens
from api.zipvoice.model.random_checkpoint import SIZES, write_random_checkpoint
from api.zipvoice.model.zipvoice import VARIANTS, ModelConfig
from api.zipvoice.sampling import SamplerOptions

REPO_ROOT = Path(__file__).resolve().parents[2]


def _copy_model_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _state(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "model.pt", weights_only=True)["model"]


def test_fixture_checkpoints_load_with_expected_variants(reference_dir: Path) -> None:
    for name, cls in VARIANTS.items():
        model = load_model(reference_dir / "models" / name)
        assert type(model) is cls
        assert not model.training
        state = _state(reference_dir / "models" / name)
        assert set(model.state_dict()) == set(state)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_dialog_speaker_ids_come_from_tokens(reference_dir: Path) -> None:
    model = load_model(reference_dir / "models" / "zipvoice_dialog")
    tokens = read_tokens(reference_dir / "models" / "zipvoice_dialog" / "tokens.txt")
    assert (model.spk_a_id, model.spk_b_id) == (tokens["[S1]"], tokens["[S2]"])
    assert model.vocab_size == len(tokens) and model.pad_id == tokens["_"]


def test_missing_key_is_rejected(reference_dir: Path, tmp_path: Path) -> None:
    d = _copy_model_dir(reference_dir / "models" / "zipvoice", tmp_path / "m")
    state = _state(d)
    del state[sorted(k for k in state if k.startswith("fm_decoder."))[0]]
    torch.save({"model": state}, d / "model.pt")
    with pytest.raises(RuntimeError, match="Missing key"):
        load_model(d)


def test_extra_key_is_rejected(reference_dir: Path, tmp_path: Path) -> None:
    d = _copy_model_dir(reference_dir / "models" / "zipvoice", tmp_path / "m")
    state = _state(d)
    state["fm_decoder.bogus.weight"] = torch.zeros(3)
    torch.save({"model": state}, d / "model.pt")
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_model(d)


def test_wrong_shape_is_rejected(reference_dir: Path, tmp_path: Path) -> None:
    d = _copy_model_dir(reference_dir / "models" / "zipvoice", tmp_path / "m")
    state = _state(d)
    state["embed.weight"] = torch.zeros(3, 3)
    torch.save({"model": state}, d / "model.pt")
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_model(d)


class _Payload:
    """Unpickling this would create a marker file (the stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.touch, (self.marker,))


def test_loader_never_unpickles_arbitrary_objects(reference_dir: Path, tmp_path: Path) -> None:
    d = _copy_model_dir(reference_dir / "models" / "zipvoice", tmp_path / "m")
    marker = tmp_path / "pwned"
    torch.save({"model": _state(d), "extra": _Payload(marker)}, d / "model.pt")
    with pytest.raises(Exception, match=r"(?i)weights.only|unpickl"):
        load_model(d)
    assert not marker.exists()


def test_module_prefix_and_safetensors(reference_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    ref = load_model(reference_dir / "models" / "zipvoice_distill")
    d = _copy_model_dir(reference_dir / "models" / "zipvoice_distill", tmp_path / "ddp")
    torch.save({"model": {f"module.{k}": v for k, v in _state(d).items()}, "epoch": 3}, d / "model.pt")
    ddp = load_model(d)
    s = _copy_model_dir(reference_dir / "models" / "zipvoice_distill", tmp_path / "st")
    save_file(_state(s), str(s / "model.safetensors"))
    (s / "model.pt").unlink()
    st = load_model(s)
    for model in (ddp, st):
        assert all(
            torch.equal(a, b)
            for a, b in zip(ref.state_dict().values(), model.state_dict().values(), strict=True)
        )


def test_variant_mismatch_is_rejected(reference_dir: Path) -> None:
    with pytest.raises(ValueError, match="looks like"):
        load_model(reference_dir / "models" / "zipvoice", variant="zipvoice_distill")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_model_json_round_trip(name: str, reference_dir: Path) -> None:
    data = json.loads((reference_dir / "models" / name / "model.json").read_text())
    config = ModelConfig.from_dict(data["model"])
    assert list(config.to_dict()) == list(data["model"])
    assert config.to_dict() == data["model"]
    # our own tiny and base configs use the same schema, in the same key order
    for size in SIZES.values():
        assert list(size.to_dict()) == list(data["model"])


def _load_script() -> object:
    spec = importlib.util.spec_from_file_location(
        "make_random_checkpoint", REPO_ROOT / "scripts" / "make_random_checkpoint.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_script_writes_loadable_tiny_checkpoints(variant: str, tmp_path: Path) -> None:
    script = _load_script()
    out = tmp_path / variant
    assert script.main(["--variant", variant, "--size", "tiny", "--out", str(out), "--seed", "3"]) == 0  # type: ignore[attr-defined]
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.pt", "tokens.txt"]
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert list(ckpt) == ["model"]
    assert infer_variant(ckpt["model"]) == variant
    model = load_model(out)
    assert type(model) is VARIANTS[variant]
    feat = 200 if variant == "zipvoice_dialog_stereo" else 100
    pred, lens = model.sample(
        [[5, 6, 7, 8]],
        [[1, 2, 3]],
        torch.randn(1, 12, feat),
        torch.tensor([12]),
        SamplerOptions(num_step=2, guidance_scale=1.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert pred.shape == (1, int(lens[0]), feat) and int(lens[0]) == 16
    assert torch.isfinite(pred).all()


def test_placeholder_tokens_without_fixture(tmp_path: Path) -> None:
    write_random_checkpoint(tmp_path / "d", "zipvoice_dialog", "tiny", tokens=None, seed=0)
    tokens = read_tokens(tmp_path / "d" / "tokens.txt")
    assert tokens["_"] == 0 and {"[S1]", "[S2]"} <= set(tokens)
    assert load_model(tmp_path / "d").vocab_size == len(tokens)


def test_base_random_checkpoint_loads_strictly(tmp_path: Path) -> None:
    path = write_random_checkpoint(tmp_path / "base", "zipvoice_distill", "base", tokens=None, seed=1)
    state = torch.load(path, weights_only=True, mmap=True)["model"]
    model = load_model(tmp_path / "base")
    assert set(model.state_dict()) == set(state)
    config = model.config
    assert config == ModelConfig()
    assert (config.fm_decoder_dim, config.fm_decoder_feedforward_dim, config.fm_decoder_num_heads) == (
        512,
        1536,
        4,
    )
    assert config.fm_decoder_num_layers == (2, 2, 4, 4, 4)
    assert (config.text_encoder_num_layers, config.text_encoder_dim, config.text_encoder_feedforward_dim) == (
        4,
        192,
        512,
    )
    assert model.fm_decoder.guidance_scale_embed is not None
    assert tuple(model.fm_decoder.guidance_scale_embed.weight.shape) == (192, 192)
    n_params = sum(p.numel() for p in model.parameters())
    assert 120_000_000 < n_params < 126_000_000
