"""Auto-transcription of Kokoro-made speech (offline Kokoro + offline Whisper tiny.en): WER ≤ 10 %."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from api.engines.base import PresetVoice, SynthesisOptions
from api.engines.kokoro import KokoroEngine
from api.settings import Settings
from api.text.wer import wer
from api.transcribe.factory import build_transcriber

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "The weather today is sunny with a light breeze from the west.",
]


def test_kokoro_speech_transcribes_back(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, whisper_model="tiny.en", allow_downloads=False)
    engine = KokoroEngine(settings)
    if not engine.availability().ok:
        pytest.fail(f"offline Kokoro assets missing: {engine.availability().reason}")
    transcriber = build_transcriber(settings)
    assert transcriber is not None
    heard = []
    for sentence in SENTENCES:
        chunks = list(engine.synthesize([sentence], PresetVoice("jm_kumo"), SynthesisOptions()))
        audio = np.concatenate([c.samples for c in chunks], axis=-1)
        heard.append(transcriber.transcribe(audio, chunks[0].sample_rate).text)
    assert wer(" ".join(SENTENCES), " ".join(heard)) <= 0.10, heard
