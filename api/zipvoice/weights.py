"""Where ZipVoice and Vocos weights come from: a local directory, the Hugging Face cache, or a download.

Local layout (what the official scripts read):
``$ZIPVOICE_MODEL_DIR/<variant>/{model.pt|model.safetensors, model.json, tokens.txt}`` and
``$VOCOS_MODEL_DIR/{config.yaml, pytorch_model.bin}``. Hub repos: ``k2-fsa/ZipVoice`` (one folder per
variant) and ``charactr/vocos-mel-24khz``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
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


def hub_cache_dir() -> str:
    """The HF hub cache, read from the environment at call time (``HF_HUB_CACHE``, ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hub_endpoint() -> str:
    """The hub's base URL (``HF_ENDPOINT``, read at call time)."""
    if os.environ.get("HF_ENDPOINT"):
        return os.environ["HF_ENDPOINT"].rstrip("/")
    from huggingface_hub import constants

    return str(constants.ENDPOINT).rstrip("/")


def _cached(repo: str, files: list[str]) -> Path | None:
    """Directory in the HF cache holding all ``files`` of ``repo`` (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found: list[Path] = []
    for name in files:
        hit = try_to_load_from_cache(repo, name, cache_dir=hub_cache_dir())
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


# ---------------------------------------------------------------------------
# ONNX files (torch-free engine): the official hub layout <variant>/{text_encoder[_int8].onnx, ...}
# ---------------------------------------------------------------------------


class HubStatus:
    """Remembers a failed hub probe per endpoint for ``retry_after_s`` (bounded, thread-safe).

    Offline, every request would otherwise spend the hub client's timeouts and retries before
    its 503; with this, one probe fails and later requests answer at once until the time is up.
    """

    MAX_ENDPOINTS = 16

    def __init__(self) -> None:
        self._failed: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def failure(self, endpoint: str, retry_after_s: float) -> str | None:
        """The remembered failure for ``endpoint`` while it is fresh, else ``None``."""
        with self._lock:
            hit = self._failed.get(endpoint)
            if hit is None:
                return None
            if time.monotonic() - hit[0] >= retry_after_s:
                del self._failed[endpoint]
                return None
            return hit[1]

    def record(self, endpoint: str, reason: str) -> None:
        with self._lock:
            if endpoint not in self._failed and len(self._failed) >= self.MAX_ENDPOINTS:
                self._failed.pop(next(iter(self._failed)))
            self._failed[endpoint] = (time.monotonic(), reason)

    def clear(self, endpoint: str) -> None:
        with self._lock:
            self._failed.pop(endpoint, None)


#: process-wide: the hub's reachability is a property of the machine, shared by all variants/apps
HUB_STATUS = HubStatus()


def onnx_variant_files(precision: str) -> tuple[str, ...]:
    from api.zipvoice.runtime.ort_numpy import variant_files

    return variant_files(precision)


def local_onnx_dir(settings: Settings, variant: str, precision: str) -> Path | None:
    """A variant folder with the ONNX graphs of ``precision``, model.json and tokens.txt: in
    ``ZIPVOICE_MODEL_DIR/<variant>/`` when set, else in the HF cache of ``k2-fsa/ZipVoice``."""
    from api.zipvoice.runtime.ort_numpy import missing_variant_files

    if settings.zipvoice_model_dir is not None:
        path = settings.zipvoice_model_dir / variant
        return path if not missing_variant_files(path, precision) else None
    return _cached(ZIPVOICE_REPO, [f"{variant}/{f}" for f in onnx_variant_files(precision)])


def onnx_missing_message(
    settings: Settings, variant: str, precision: str, have_model: bool = False, have_vocos: bool = False
) -> str:
    """What to put where for the ONNX engine (only the parts that are missing)."""
    parts: list[str] = []
    if not have_model:
        files = ", ".join(onnx_variant_files(precision))
        where = (
            f"{settings.zipvoice_model_dir}/{variant}/"
            if settings.zipvoice_model_dir is not None
            else f"ZIPVOICE_MODEL_DIR/{variant}/ (or the HF cache of {ZIPVOICE_REPO})"
        )
        parts.append(f"put {files} from {ZIPVOICE_REPO}/{variant} into {where}")
    if not have_vocos:
        where = (
            f"{settings.vocos_model_dir}/"
            if settings.vocos_model_dir is not None
            else f"VOCOS_MODEL_DIR/ (or the HF cache of {VOCOS_REPO})"
        )
        parts.append(f"put config.yaml and pytorch_model.bin from {VOCOS_REPO} into {where}")
    what = "ONNX files" if not have_model else "the Vocos vocoder"
    return (
        f"{what} for '{variant}' not found: {', and '.join(parts) or 'nothing missing'}; "
        "or set ALLOW_DOWNLOADS=true on a machine with network access"
    )


def onnx_weights_state(
    settings: Settings, variant: str, precision: str, model_present: bool | None = None
) -> tuple[bool, str | None]:
    """(usable, reason) for the ONNX engine; fast (no network): a remembered hub failure counts.
    ``model_present``: the caller found the graphs elsewhere (e.g. an export), else looked up here."""
    have_model = (
        local_onnx_dir(settings, variant, precision) is not None if model_present is None else model_present
    )
    have_vocos = local_vocos_dir(settings) is not None
    if have_model and have_vocos:
        return True, None
    can_fetch_model = have_model or (settings.allow_downloads and settings.zipvoice_model_dir is None)
    can_fetch_vocos = have_vocos or (settings.allow_downloads and settings.vocos_model_dir is None)
    missing = onnx_missing_message(settings, variant, precision, have_model, have_vocos)
    if not (can_fetch_model and can_fetch_vocos):
        return False, missing
    failed = HUB_STATUS.failure(hub_endpoint(), settings.hub_retry_after_s)
    if failed is not None:
        return False, f"{failed}; {missing}"
    return True, "weights will be downloaded on first use"


def probe_hub(settings: Settings, repo: str, filename: str) -> None:
    """One HEAD request for a file on the hub, without the client's retries; raises
    :class:`WeightsMissing` (and remembers the failure) when the hub cannot be reached."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    endpoint = hub_endpoint()
    failed = HUB_STATUS.failure(endpoint, settings.hub_retry_after_s)
    if failed is not None:
        raise WeightsMissing(failed)
    url = hf_hub_url(repo, filename, endpoint=endpoint)
    try:
        get_hf_file_metadata(
            url, timeout=settings.hub_probe_timeout_s, endpoint=endpoint, retry_on_errors=False
        )
    except Exception as exc:
        reason = (
            f"the Hugging Face hub at {endpoint} did not answer for {repo}/{filename} "
            f"({type(exc).__name__}); not retried for {settings.hub_retry_after_s:g} s"
        )
        HUB_STATUS.record(endpoint, reason)
        log.warning("%s", reason)
        raise WeightsMissing(reason) from exc
    HUB_STATUS.clear(endpoint)


def verify_blob(path: Path) -> None:
    """Check a downloaded file against its hub ETag when that is a sha256 (LFS files: the HF cache
    names the blob by it); a mismatch removes the file and raises ``ValueError``."""
    blob = path.resolve()
    etag = blob.name
    if len(etag) != 64 or any(c not in "0123456789abcdef" for c in etag):
        return  # git-stored small files have a sha1-based ETag: the hub client checked the size
    digest = hashlib.sha256()
    with blob.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != etag:
        blob.unlink(missing_ok=True)
        raise ValueError(
            f"{path.name}: sha256 {digest.hexdigest()[:12]}… does not match the hub's {etag[:12]}…"
        )


def _download(repo: str, names: list[str]) -> Path:
    """Resumable (``.incomplete`` files continue with a Range request), verified (size by the hub
    client, sha256 here) downloads into the HF cache, with tqdm progress bars; returns the folder."""
    from huggingface_hub import hf_hub_download

    paths = []
    for name in names:
        path = Path(
            hf_hub_download(repo, name, cache_dir=hub_cache_dir(), endpoint=hub_endpoint(), etag_timeout=10)
        )
        verify_blob(path)
        paths.append(path)
    return paths[-1].parent


def fetch_onnx_weights(
    settings: Settings, variant: str, precision: str, model_dir: Path | None = None
) -> tuple[Path, Path]:
    """The variant's ONNX folder (``model_dir`` when given) and the Vocos folder, downloading what
    is missing when allowed (one hub probe first; a failed probe is remembered)."""
    model_dir = model_dir or local_onnx_dir(settings, variant, precision)
    vocos_dir = local_vocos_dir(settings)
    if model_dir is not None and vocos_dir is not None:
        return model_dir, vocos_dir
    ok, reason = onnx_weights_state(settings, variant, precision, model_present=model_dir is not None)
    if not ok:
        raise WeightsMissing(reason or "weights missing")
    files = onnx_variant_files(precision)
    missing = onnx_missing_message(settings, variant, precision, model_dir is not None, vocos_dir is not None)
    try:
        if model_dir is None:
            probe_hub(settings, ZIPVOICE_REPO, f"{variant}/{files[-1]}")
            log.info("downloading %s/%s (%s)", ZIPVOICE_REPO, variant, ", ".join(files))
            model_dir = _download(ZIPVOICE_REPO, [f"{variant}/{f}" for f in files])
        if vocos_dir is None:
            probe_hub(settings, VOCOS_REPO, VOCOS_FILES[0])
            log.info("downloading %s", VOCOS_REPO)
            vocos_dir = _download(VOCOS_REPO, list(VOCOS_FILES))
    except WeightsMissing as exc:
        raise WeightsMissing(f"{exc}; {missing}") from exc
    except Exception as exc:
        raise WeightsMissing(f"download failed ({type(exc).__name__}: {str(exc)[:200]}); {missing}") from exc
    return model_dir, vocos_dir
