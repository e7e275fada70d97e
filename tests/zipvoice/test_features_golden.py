"""Our Vocos log-mel vs the reference ``VocosFbank`` golden features (README 3b)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from api.zipvoice.audio_prep import read_audio
from api.zipvoice.features import VocosFbank, htk_mel_filterbank, num_frames_for

ATOL = 2e-3  # README section 4: independent log-mel vs *_fbank or *_fbank_librosa

CASES = [("prompt", 1), ("prompt_dialog", 1), ("prompt_dialog_stereo", 2)]


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "golden" / "features.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize(("name", "channels"), CASES)
def test_fbank_matches_reference(
    reference_dir: Path, golden: dict[str, np.ndarray], name: str, channels: int
) -> None:
    wav, sr = read_audio(reference_dir / "audio" / f"{name}.wav")
    assert wav.shape[0] == channels
    feats = VocosFbank(num_channels=channels).extract(wav, sampling_rate=sr)
    assert feats.dtype == torch.float32
    for suffix in ("_fbank", "_fbank_librosa"):
        ref = golden[name + suffix]
        assert tuple(feats.shape) == ref.shape
        np.testing.assert_allclose(feats.numpy(), ref, rtol=0, atol=ATOL)


def test_frame_count_rule(reference_dir: Path) -> None:
    wav, sr = read_audio(reference_dir / "audio" / "prompt_dialog.wav")
    n = wav.shape[-1]
    fb = VocosFbank()
    assert fb.log_mel(wav).shape[-1] == 1 + n // 256  # STFT frames (241)
    assert fb.extract(wav, sr).shape[0] == num_frames_for(n) == (n + 128) // 256  # lhotse rule (240)


def test_full_logmel(reference_dir: Path, golden: dict[str, np.ndarray]) -> None:
    wav, _ = read_audio(reference_dir / "audio" / "prompt.wav")
    full = VocosFbank().log_mel(wav)
    for key in ("prompt_logmel_full", "prompt_logmel_full_librosa"):
        assert tuple(full.shape) == golden[key].shape
        np.testing.assert_allclose(full.numpy(), golden[key], rtol=0, atol=ATOL)


def test_stereo_to_mono_extractor_averages(reference_dir: Path, golden: dict[str, np.ndarray]) -> None:
    wav, sr = read_audio(reference_dir / "audio" / "prompt_dialog_stereo.wav")
    mono = VocosFbank(num_channels=1).extract(wav, sr)
    expect = VocosFbank(num_channels=1).extract(wav.mean(dim=0, keepdim=True), sr)
    assert torch.equal(mono, expect)


def test_truncates_extra_stft_frame() -> None:
    # 1100 samples: the STFT yields 1 + 1100 // 256 = 5 frames, the lhotse rule keeps 4.
    wav = torch.randn(1, 1100) * 0.1
    fb = VocosFbank()
    assert fb.log_mel(wav).shape[-1] == 5
    feats = fb.extract(wav, 24000)
    assert feats.shape == (num_frames_for(1100), 100) == (4, 100)
    assert torch.equal(feats, fb.log_mel(wav)[0].t()[:4])


def test_filterbank_shape_and_edges() -> None:
    fb = htk_mel_filterbank(513, 0.0, 12000.0, 100, 24000)
    assert fb.shape == (513, 100)
    assert float(fb.min()) >= 0.0
    assert bool((fb.sum(dim=0) > 0).all())


def test_rejects_wrong_rate() -> None:
    with pytest.raises(ValueError):
        VocosFbank().extract(torch.zeros(1, 1000), 16000)
