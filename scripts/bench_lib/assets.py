"""Benchmark assets: full-size random ZipVoice checkpoints and a full-size random Vocos.

Random weights cost the same compute as the real ones (same shapes, same graph); the predicted
duration depends only on the prompt and the token counts, so output lengths are realistic too.
Everything is written once into a cache directory and reused by later runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

#: the real charactr/vocos-mel-24khz configuration
VOCOS_CONFIG = """\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args:
    sample_rate: 24000
    n_fft: 1024
    hop_length: 256
    n_mels: 100
    padding: center

backbone:
  class_path: vocos.models.VocosBackbone
  init_args:
    input_channels: 100
    dim: 512
    intermediate_dim: 1536
    num_layers: 8

head:
  class_path: vocos.heads.ISTFTHead
  init_args:
    dim: 512
    n_fft: 1024
    hop_length: 256
    padding: center
"""

PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."


def fixtures_dir() -> Path:
    env = os.environ.get("ZIPVOICE_REFERENCE_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "fixtures" / "zipvoice-reference"


def prompt_wav() -> Path:
    return fixtures_dir() / "audio" / "prompt.wav"


def write_random_vocos(out_dir: Path, seed: int = 0, config: str = VOCOS_CONFIG) -> Path:
    """A random-weight Vocos in the official format (config.yaml + pytorch_model.bin)."""
    import torch
    import yaml

    from api.zipvoice.vocos import build_vocos

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocos = build_vocos(yaml.safe_load(config))
    with torch.no_grad():
        # keep activations in a sane range (the head caps magnitudes anyway)
        for _name, p in vocos.named_parameters():
            if p.dim() > 1:
                p.mul_(0.5)
    (out_dir / "config.yaml").write_text(config, encoding="utf-8")
    torch.save(vocos.state_dict(), out_dir / "pytorch_model.bin")
    return out_dir


def ensure_assets(
    cache: Path, size: str = "base", variants: tuple[str, ...] = ("zipvoice", "zipvoice_distill")
) -> tuple[Path, Path]:
    """(ZIPVOICE_MODEL_DIR, VOCOS_MODEL_DIR) under ``cache``; built on first use.

    ``size="tiny"`` uses the fixture's tiny vocoder and tiny random checkpoints (smoke tests).
    """
    from api.zipvoice.model.random_checkpoint import write_random_checkpoint

    root = cache / f"zipvoice-{size}"
    model_dir = root / "models"
    tokens = fixtures_dir() / "models" / "zipvoice" / "tokens.txt"
    for variant in variants:
        d = model_dir / variant
        stamp = d / ".complete"
        if not stamp.is_file():
            write_random_checkpoint(d, variant, size, tokens if tokens.is_file() else None, seed=0)
            stamp.write_text(json.dumps({"variant": variant, "size": size}), encoding="utf-8")
    if size == "tiny":
        vocos_dir = fixtures_dir() / "vocos-mel-24khz-tiny"
    else:
        vocos_dir = root / "vocos"
        if not (vocos_dir / ".complete").is_file():
            write_random_vocos(vocos_dir)
            (vocos_dir / ".complete").write_text("ok", encoding="utf-8")
    return model_dir, vocos_dir
