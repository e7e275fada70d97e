"""Where ZipVoice and Vocos weights come from: a local directory, the Hugging Face cache, or a download.

Local layout (what the official scripts read):
``$ZIPVOICE_MODEL_DIR/<variant>/{model.pt|model.safetensors, model.json, tokens.txt}`` and
``$VOCOS_MODEL_DIR/{config.yaml, pytorch_model.bin}``. Hub repos: ``k2-fsa/ZipVoice`` (one folder per
variant) and ``charactr/vocos-mel-24khz``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from api.settings import Settings

log = logging.getLogger(__name__)

ZIPVOICE_REPO = "k2-fsa/ZipVoice"
VOCOS_REPO = "charactr/vocos-mel-24khz"
MODEL_FILES = ("model.json", "tokens.txt")
CHECKPOINTS = ("model.pt", "model.safetensors")
VOCOS_FILES = ("config.yaml", "pytorch_model.bin")


class WeightsMissing(RuntimeError):
    """The weights are not here and cannot be fetched; the message says what to put where."""


def _complete_model_dir(path: Path) -> bool:
    return all((path / f).is_file() for f in MODEL_FILES) and any((path / c).is_file() for c in CHECKPOINTS)


def _complete_vocos_dir(path: Path) -> bool:
    return all((path / f).is_file() for f in VOCOS_FILES)


def _cached(repo: str, files: list[str]) -> Path | None:
    """Directory in the HF cache holding all ``files`` of ``repo`` (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found: list[Path] = []
    for name in files:
        hit = try_to_load_from_cache(repo, name)
        if not isinstance(hit, str):
            return None
        found.append(Path(hit))
    parent = found[0].parent
    return parent if all(p.parent == parent for p in found) else None


def local_model_dir(settings: Settings, variant: str) -> Path | None:
    if settings.zipvoice_model_dir is not None:
        path = settings.zipvoice_model_dir / variant
        return path if _complete_model_dir(path) else None
    return _cached(ZIPVOICE_REPO, [f"{variant}/{f}" for f in (*MODEL_FILES, "model.pt")])


def local_vocos_dir(settings: Settings) -> Path | None:
    if settings.vocos_model_dir is not None:
        return settings.vocos_model_dir if _complete_vocos_dir(settings.vocos_model_dir) else None
    return _cached(VOCOS_REPO, list(VOCOS_FILES))


def missing_message(settings: Settings, variant: str) -> str:
    model_where = (
        f"{settings.zipvoice_model_dir}/{variant}/"
        if settings.zipvoice_model_dir is not None
        else f"ZIPVOICE_MODEL_DIR/{variant}/ (or the HF cache of {ZIPVOICE_REPO})"
    )
    vocos_where = (
        f"{settings.vocos_model_dir}/"
        if settings.vocos_model_dir is not None
        else f"VOCOS_MODEL_DIR/ (or the HF cache of {VOCOS_REPO})"
    )
    return (
        f"weights for '{variant}' not found: put model.pt, model.json and tokens.txt from "
        f"{ZIPVOICE_REPO}/{variant} into {model_where}, and config.yaml and pytorch_model.bin from "
        f"{VOCOS_REPO} into {vocos_where}; or set ALLOW_DOWNLOADS=true on a machine with network access"
    )


def weights_state(settings: Settings, variant: str) -> tuple[bool, str | None]:
    """(usable, reason): usable when present locally, or fetchable (downloads allowed, no local dir pinned)."""
    have_model = local_model_dir(settings, variant) is not None
    have_vocos = local_vocos_dir(settings) is not None
    if have_model and have_vocos:
        return True, None
    can_fetch_model = have_model or (settings.allow_downloads and settings.zipvoice_model_dir is None)
    can_fetch_vocos = have_vocos or (settings.allow_downloads and settings.vocos_model_dir is None)
    if can_fetch_model and can_fetch_vocos:
        return True, "weights will be downloaded on first use"
    return False, missing_message(settings, variant)


def fetch_weights(settings: Settings, variant: str) -> tuple[Path, Path]:
    """Model and vocoder directories, downloading into the HF cache (with progress bars) if allowed."""
    model_dir = local_model_dir(settings, variant)
    vocos_dir = local_vocos_dir(settings)
    if model_dir is not None and vocos_dir is not None:
        return model_dir, vocos_dir
    ok, _ = weights_state(settings, variant)
    if not ok:
        raise WeightsMissing(missing_message(settings, variant))
    from huggingface_hub import hf_hub_download

    try:
        if model_dir is None:
            log.info("downloading %s/%s", ZIPVOICE_REPO, variant)
            paths = [hf_hub_download(ZIPVOICE_REPO, f"{variant}/{f}") for f in (*MODEL_FILES, "model.pt")]
            model_dir = Path(paths[0]).parent
        if vocos_dir is None:
            log.info("downloading %s", VOCOS_REPO)
            paths = [hf_hub_download(VOCOS_REPO, f) for f in VOCOS_FILES]
            vocos_dir = Path(paths[0]).parent
    except Exception as exc:
        raise WeightsMissing(
            f"download failed ({type(exc).__name__}); {missing_message(settings, variant)}"
        ) from exc
    return model_dir, vocos_dir
