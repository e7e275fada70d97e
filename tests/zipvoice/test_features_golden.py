"""Our Vocos log-mel vs the reference ``VocosFbank`` golden features (README 3b).

The prompts under test are the ones with ``<stem>_fbank`` arrays in ``golden/features.npz``;
their channel counts come from ``golden/cases.json`` (how the cases use each prompt).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from api.zipvoice.audio_prep import read_audio
from api.zipvoice.features import VocosFbank, htk_mel_filterbank, num_frames_for
from tests.zipvoice import golden

ATOL = 2e-3  # README section 4: independent log-mel vs *_fbank or *_fbank_librosa
HOP = 256


@pytest.fixture(scope="module")
def features(reference_dir: Path) -> dict[str, np.ndarray]:
    return golden.load_npz(reference_dir, "features")


def _channels(reference_dir: Path, stem: str, features: dict[str, np.ndarray]) -> int:
    """As the cases use the prompt; a prompt no case uses: one channel per 100 feature bins."""
    fallback = features[f"{stem}_fbank"].shape[-1] // 100
    return golden.prompt_channels(reference_dir).get(f"audio/{stem}.wav", fallback)


@pytest.mark.parametrize("stem", golden.feature_prompts())
def test_fbank_matches_reference(reference_dir: Path, features: dict[str, np.ndarray], stem: str) -> None:
    channels = _channels(reference_dir, stem, features)
    wav, sr = read_audio(reference_dir / "audio" / f"{stem}.wav")
    assert wav.shape[0] == channels
    feats = VocosFbank(num_channels=channels).extract(wav, sampling_rate=sr)
    assert feats.dtype == torch.float32
    for suffix in ("_fbank", "_fbank_librosa"):
        ref = features[stem + suffix]
        assert tuple(feats.shape) == ref.shape
        np.testing.assert_allclose(feats.numpy(), ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("stem", golden.feature_prompts())
def test_frame_count_rule(reference_dir: Path, features: dict[str, np.ndarray], stem: str) -> None:
    wav, sr = read_audio(reference_dir / "audio" / f"{stem}.wav")
    n = wav.shape[-1]
    fb = VocosFbank()
    assert fb.log_mel(wav).shape[-1] == 1 + n // HOP  # STFT frames (center=True)
    frames = fb.extract(wav, sr).shape[0]
    assert frames == num_frames_for(n) == (n + HOP // 2) // HOP  # lhotse rule
    assert frames == features[f"{stem}_fbank"].shape[0]


@pytest.mark.parametrize("key", ["logmel_full", "logmel_full_librosa"])
def test_full_logmel(reference_dir: Path, features: dict[str, np.ndarray], key: str) -> None:
    stems = [k[: -len("_" + key)] for k in features if k.endswith("_" + key)]
    assert stems, f"no *_{key} array in features.npz"
    for stem in stems:
        wav, _ = read_audio(reference_dir / "audio" / f"{stem}.wav")
        full = VocosFbank().log_mel(wav)
        ref = features[f"{stem}_{key}"]
        assert tuple(full.shape) == ref.shape
        np.testing.assert_allclose(full.numpy(), ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("stem", golden.multichannel_prompts())
def test_multichannel_to_mono_extractor_averages(reference_dir: Path, stem: str) -> None:
    golden.require(stem)
    wav, sr = read_audio(reference_dir / "audio" / f"{stem}.wav")
    assert wav.shape[0] > 1
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
