"""Optional transcriber on the reference ``openai-whisper`` package (extra ``openai-whisper``).

The package (and torch) is imported only when the model loads. Weights go to
``<cache_dir>/openai-whisper`` (downloaded by the package when ``allow_downloads``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from api.errors import ServiceUnavailableError
from api.loading import LoadOnce
from api.timing import Segment
from api.transcribe.base import WHISPER_SAMPLE_RATE, Transcript, missing_extra_error, to_mono_16k


class OpenAIWhisperTranscriber:
    """Whisper via ``openai-whisper`` (PyTorch); CUDA when available, else CPU fp32."""

    name = "openai-whisper"

    def __init__(
        self,
        model: str = "base",
        *,
        cache_dir: Path | str | None = None,
        allow_downloads: bool = True,
        device: str = "auto",
        cpu_threads: int = 0,
    ) -> None:
        self.model_name = model
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.allow_downloads = allow_downloads
        self.device = device
        self.cpu_threads = cpu_threads
        self._loaded: LoadOnce[tuple[Any, Any]] = LoadOnce(self._build)

    def load(self) -> None:
        """Load the model once (thread-safe)."""
        self._loaded.get()

    def _build(self) -> tuple[Any, Any]:
        """(the whisper module, the loaded model)."""
        try:
            import torch
            import whisper
        except ImportError as exc:
            raise missing_extra_error("openai-whisper") from exc
        root = str(self.cache_dir / "openai-whisper") if self.cache_dir else None
        local = Path(self.model_name).expanduser()
        if not local.is_file() and not self.allow_downloads:
            name = self.model_name
            cached = root is not None and (Path(root) / f"{name}.pt").is_file()
            if not cached:
                raise ServiceUnavailableError(
                    f"openai-whisper model '{name}' is not cached and downloads are disabled: "
                    "set WHISPER_MODEL to a local .pt file or enable ALLOW_DOWNLOADS.",
                    code="transcriber_unavailable",
                )
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        name = str(local) if local.is_file() else self.model_name
        model = whisper.load_model(name, device=device, download_root=root)
        self.device = device
        return whisper, model

    def transcribe(self, samples: np.ndarray, sample_rate: int, language: str | None = None) -> Transcript:
        """Transcribe a clip; language detected (with its probability) when not given."""
        whisper, model = self._loaded.get()
        audio = to_mono_16k(samples, sample_rate)
        prob: float | None = 1.0 if language else None
        if language is None and model.is_multilingual:
            mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), model.dims.n_mels).to(model.device)
            _, probs = model.detect_language(mel)
            language = max(probs, key=probs.get)
            prob = float(probs[language])
        elif language is None:
            language, prob = "en", 1.0
        result = model.transcribe(audio, language=language, fp16=self.device.startswith("cuda"))
        segments = tuple(
            Segment(float(s["start"]), float(s["end"]), str(s["text"]).strip()) for s in result["segments"]
        )
        return Transcript(
            text=str(result["text"]).strip(),
            language=language,
            language_probability=prob,
            segments=segments,
            duration=audio.shape[0] / WHISPER_SAMPLE_RATE,
            model=self.model_name,
        )
