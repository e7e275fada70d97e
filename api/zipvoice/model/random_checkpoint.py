"""Write random-weight checkpoints in the official on-disk layout (for tests and benchmarks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from api.zipvoice.model.checkpoint import build_model, read_tokens
from api.zipvoice.model.zipvoice import VARIANTS, ModelConfig

SIZES: dict[str, ModelConfig] = {
    "base": ModelConfig(),
    "tiny": ModelConfig(
        fm_decoder_num_layers=(1, 1, 1, 1, 1),
        fm_decoder_feedforward_dim=128,
        fm_decoder_num_heads=2,
        fm_decoder_dim=64,
        text_encoder_num_layers=2,
        text_encoder_feedforward_dim=64,
        text_encoder_num_heads=2,
        text_encoder_dim=32,
        time_embed_dim=48,
        text_embed_dim=24,
        query_head_dim=8,
        value_head_dim=4,
        pos_head_dim=4,
        pos_dim=16,
    ),
}

PLACEHOLDER_VOCAB = 358


def placeholder_tokens(dialog: bool, size: int = PLACEHOLDER_VOCAB) -> list[tuple[str, int]]:
    """``_`` (pad, id 0) plus dummy tokens; dialog tables get ``[S1]``/``[S2]`` appended."""
    table = [("_", 0)] + [(f"<tok{i}>", i) for i in range(1, size)]
    if dialog:
        table += [("[S1]", size), ("[S2]", size + 1)]
    return table


def write_random_checkpoint(
    out_dir: Path,
    variant: str = "zipvoice",
    size: str = "tiny",
    tokens: Path | None = None,
    seed: int = 0,
    fmt: str = "pt",
) -> Path:
    """Create ``model.json``, ``tokens.txt`` and ``model.pt`` (or ``model.safetensors``) in ``out_dir``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    config = SIZES[size]
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens_path = out_dir / "tokens.txt"
    if tokens is not None:
        if tokens.resolve() != tokens_path.resolve():
            shutil.copyfile(tokens, tokens_path)
    else:
        lines = placeholder_tokens(variant.startswith("zipvoice_dialog"))
        tokens_path.write_text("".join(f"{t}\t{i}\n" for t, i in lines), encoding="utf-8")
    table = read_tokens(tokens_path)

    (out_dir / "model.json").write_text(
        json.dumps(
            {"model": config.to_dict(), "feature": {"sampling_rate": 24000, "type": "vocos"}}, indent=2
        )
        + "\n",
        encoding="utf-8",
    )

    torch.manual_seed(seed)
    model = build_model(variant, config, table)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bypass_scale"):
                param.fill_(0.5)
            elif name.endswith("norm.log_scale"):
                param.fill_(1.0)
            elif name.endswith("downsample.bias"):
                param.normal_(0.0, 0.1)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = out_dir / "model.safetensors"
        save_file(state, str(path))
    elif fmt == "pt":
        path = out_dir / "model.pt"
        torch.save({"model": state}, path)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return path
