"""Build a ZipVoice model from an official model directory and load its weights safely.

A model directory holds ``model.json`` (``{"model": {...}, "feature": {...}}``), ``tokens.txt``
(``token<TAB>id`` lines) and ``model.pt`` (``{"model": state_dict}``) or ``model.safetensors``.
The variant is inferred from the state-dict keys unless given.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from api.zipvoice.model.zipvoice import VARIANTS, ModelConfig, ZipVoice

CHECKPOINT_NAMES = ("model.pt", "model.safetensors")


def read_tokens(path: Path) -> dict[str, int]:
    """Parse ``tokens.txt`` into ``{token: id}`` (the token may itself be a space)."""
    table: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            token, sep, ident = line.rpartition("\t")
            if not sep:
                raise ValueError(f"{path}:{line_no}: expected 'token<TAB>id'")
            table[token] = int(ident)
    return table


def read_state_dict(path: Path, mmap: bool = False) -> dict[str, Tensor]:
    """Load tensors only: ``.safetensors`` via safetensors, else ``torch.load(weights_only=True)``.

    For ``.pt`` files the ``"model"`` entry is used when present; a DDP ``module.`` prefix is
    stripped. ``mmap`` is off by default: weights then live in private memory, so a checkpoint
    file replaced or truncated while the server runs cannot corrupt (or SIGBUS) a loaded model.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Mapping[str, Any] = load_file(str(path))
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:  # e.g. legacy (non-zip) files cannot be memory-mapped
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path}: expected a dict checkpoint, got {type(loaded).__name__}")
        state = loaded.get("model", loaded)
        if not isinstance(state, Mapping):
            raise ValueError(f"{path}: checkpoint['model'] is not a state dict")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{path}: entry {key!r} is not a tensor")
        out[key.removeprefix("module.")] = value
    return out


def infer_variant(keys: set[str] | Mapping[str, Any]) -> str:
    """Tell the variant from characteristic state-dict keys."""
    if "fm_decoder.in_proj.0.weight" in keys:
        return "zipvoice_dialog_stereo"
    if "spk_embed.weight" in keys:
        return "zipvoice_dialog"
    if "fm_decoder.guidance_scale_embed.weight" in keys:
        return "zipvoice_distill"
    return "zipvoice"


@contextlib.contextmanager
def _skip_weight_init() -> Iterator[None]:
    """Make ``torch.nn.init`` fills no-ops while modules are built (weights are loaded after).

    Cheaper than the ``meta`` device on CPU (whose first use imports the compiler stack), and
    untouched ``torch.empty`` storage is not resident memory.
    """
    names = ("kaiming_uniform_", "uniform_", "normal_", "zeros_", "ones_", "constant_")
    saved = {n: getattr(torch.nn.init, n) for n in names}

    def keep(tensor: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return tensor

    try:
        for n in names:
            setattr(torch.nn.init, n, keep)
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def build_model(
    variant: str,
    config: ModelConfig,
    tokens: Mapping[str, int],
    device: torch.device | str = "cpu",
    init_weights: bool = True,
) -> ZipVoice:
    """Construct a model; with ``init_weights=False`` weights are left uninitialised."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    if "_" not in tokens:
        raise ValueError("tokens.txt has no pad token '_'")
    kwargs: dict[str, Any] = {"vocab_size": len(tokens), "pad_id": tokens["_"]}
    if variant.startswith("zipvoice_dialog"):
        missing = [t for t in ("[S1]", "[S2]") if t not in tokens]
        if missing:
            raise ValueError(f"dialog model needs {missing} in tokens.txt")
        kwargs.update(spk_a_id=tokens["[S1]"], spk_b_id=tokens["[S2]"])
    ctx = contextlib.nullcontext() if init_weights else _skip_weight_init()
    with ctx, torch.device(device):
        return VARIANTS[variant](config, **kwargs)


def find_checkpoint(model_dir: Path) -> Path:
    """``model.pt`` if present, else ``model.safetensors``."""
    for name in CHECKPOINT_NAMES:
        if (model_dir / name).is_file():
            return model_dir / name
    raise FileNotFoundError(f"no {' or '.join(CHECKPOINT_NAMES)} in {model_dir}")


def load_model(
    model_dir: Path | str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    variant: str | None = None,
    checkpoint: Path | str | None = None,
) -> ZipVoice:
    """Load a model directory into an eval-mode model with strict key matching.

    ``variant`` (``zipvoice``, ``zipvoice_distill``, ``zipvoice_dialog``,
    ``zipvoice_dialog_stereo``) is inferred from the weights when omitted; ``checkpoint``
    overrides the weight file name.
    """
    model_dir = Path(model_dir)
    config_json = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    config = ModelConfig.from_dict(config_json["model"])
    tokens = read_tokens(model_dir / "tokens.txt")
    ckpt_path = Path(checkpoint) if checkpoint is not None else find_checkpoint(model_dir)
    if not ckpt_path.is_absolute() and not ckpt_path.exists():
        ckpt_path = model_dir / ckpt_path
    state = read_state_dict(ckpt_path)
    detected = infer_variant(state)
    if variant is None:
        variant = detected
    elif variant != detected:
        raise ValueError(f"checkpoint looks like {detected!r}, not {variant!r}")

    model = build_model(variant, config, tokens, init_weights=False)
    # assign=True adopts the loaded tensors instead of copying into freshly initialised ones.
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device=device, dtype=dtype)
    model.requires_grad_(False)
    return model.eval()
