"""numpy Vocos log-mel (``features_np``) vs the golden features and vs the torch implementation."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from api.zipvoice.features_np import N_MELS, VocosFbank, htk_mel_filterbank, num_frames_for

# README section 4 (suggested acceptance tolerance for an independent log-mel), the same value the
# torch feature golden test (tests/zipvoice/test_features_golden.py) uses.
ATOL = 2e-3
# numpy (float64 FFT) vs torch (float32 FFT) on broadband noise, where no band is near the log floor
TORCH_ATOL = 1e-4


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """PCM16 WAV -> float32 ``(C, T)`` (int16 / 32768, as the reference reads it), without torch."""
    with wave.open(str(path), "rb") as wf:
        assert wf.getsampwidth() == 2
        raw = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
        wav = raw.reshape(-1, wf.getnchannels()).T.astype(np.float32) / 32768.0
        return np.ascontiguousarray(wav), wf.getframerate()


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "golden" / "features.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def feature_cases(reference_dir: Path) -> list[str]:
    cases = json.loads((reference_dir / "golden" / "cases.json").read_text(encoding="utf-8"))
    names = sorted(cases["features"])
    assert names
    return names


def test_fbank_matches_golden(
    reference_dir: Path, golden: dict[str, np.ndarray], feature_cases: list[str]
) -> None:
    for name in feature_cases:
        wav, sr = read_wav(reference_dir / "audio" / f"{name}.wav")
        refs = [golden[name + suffix] for suffix in ("_fbank", "_fbank_librosa")]
        channels = refs[0].shape[1] // N_MELS
        assert wav.shape[0] == channels
        feats = VocosFbank(num_channels=channels).extract(wav, sampling_rate=sr)
        assert feats.dtype == np.float32
        for ref in refs:
            assert feats.shape == ref.shape
            np.testing.assert_allclose(feats, ref, rtol=0, atol=ATOL, err_msg=name)


def test_full_logmel_matches_golden(reference_dir: Path, golden: dict[str, np.ndarray]) -> None:
    keys = [k for k in golden if "_logmel_full" in k]
    assert keys
    for key in keys:
        name = key.split("_logmel_full")[0]
        wav, _ = read_wav(reference_dir / "audio" / f"{name}.wav")
        full = VocosFbank().log_mel(wav)
        assert full.shape == golden[key].shape
        np.testing.assert_allclose(full, golden[key], rtol=0, atol=ATOL, err_msg=key)


def test_frame_count_rule(reference_dir: Path, feature_cases: list[str]) -> None:
    wav, sr = read_wav(reference_dir / "audio" / f"{feature_cases[0]}.wav")
    n = wav.shape[-1]
    fb = VocosFbank()
    assert fb.log_mel(wav[:1]).shape[-1] == 1 + n // 256
    assert fb.extract(wav[:1], sr).shape[0] == num_frames_for(n) == (n + 128) // 256


def test_truncates_extra_stft_frame() -> None:
    wav = (np.random.default_rng(0).standard_normal((1, 1100)) * 0.1).astype(np.float32)
    fb = VocosFbank()
    assert fb.log_mel(wav).shape[-1] == 5
    feats = fb.extract(wav, 24000)
    assert feats.shape == (4, 100)
    np.testing.assert_array_equal(feats, fb.log_mel(wav)[0].T[:4])


def test_stereo_to_mono_averages_and_channel_major_stereo() -> None:
    rng = np.random.default_rng(1)
    wav = (rng.standard_normal((2, 4000)) * 0.1).astype(np.float32)
    mono = VocosFbank(1).extract(wav, 24000)
    np.testing.assert_array_equal(mono, VocosFbank(1).extract(wav.mean(axis=0, keepdims=True), 24000))
    stereo = VocosFbank(2).extract(wav, 24000)
    assert stereo.shape == (num_frames_for(4000), 200)
    np.testing.assert_array_equal(stereo[:, :100], VocosFbank(1).extract(wav[:1], 24000))
    np.testing.assert_array_equal(stereo[:, 100:], VocosFbank(1).extract(wav[1], 24000))


def test_long_input_uses_blocks_consistently() -> None:
    # more frames than one FFT block: the blocked result equals frame-wise pieces of it
    rng = np.random.default_rng(2)
    wav = (rng.standard_normal(256 * 2500) * 0.05).astype(np.float32)
    full = VocosFbank().log_mel(wav[None])
    part = VocosFbank().log_mel(wav[None, : 256 * 300])
    np.testing.assert_allclose(full[..., :297], part[..., :297], rtol=0, atol=1e-6)
    assert np.isfinite(full).all()


def test_filterbank_shape_and_edges() -> None:
    fb = htk_mel_filterbank(513, 0.0, 12000.0, 100, 24000)
    assert fb.shape == (513, 100) and fb.dtype == np.float32
    assert float(fb.min()) >= 0.0
    assert bool((fb.sum(axis=0) > 0).all())


@pytest.mark.parametrize(
    ("samples", "kwargs", "match"),
    [
        (np.zeros((1, 1000), np.float32), {"sampling_rate": 16000}, "Hz"),
        (np.zeros((1, 1, 1000), np.float32), {"sampling_rate": 24000}, "shape"),
        (np.zeros((3, 1000), np.float32), {"sampling_rate": 24000}, "channels"),
        (np.zeros((1, 100), np.float32), {"sampling_rate": 24000}, "too short"),
    ],
)
def test_rejects_bad_input(samples: np.ndarray, kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VocosFbank().extract(samples, **kwargs)
    with pytest.raises(ValueError):
        VocosFbank(num_channels=3)


# -- equality with the torch implementation -------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "length"), [(1, 513), (1, 1100), (2, 24000 * 3 + 17), (1, 256 * 2200 + 5)]
)
def test_matches_torch_on_random_audio(channels: int, length: int) -> None:
    torch = pytest.importorskip("torch")
    from api.zipvoice import features as torch_features

    wav = (np.random.default_rng(length).standard_normal((channels, length)) * 0.1).astype(np.float32)
    ours = VocosFbank(channels).extract(wav, 24000)
    ref = torch_features.VocosFbank(channels).extract(torch.from_numpy(wav), 24000).numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=TORCH_ATOL)
    if channels == 2:  # the stereo input through the mono extractor (averaging) as well
        ours_mono = VocosFbank(1).extract(wav, 24000)
        ref_mono = torch_features.VocosFbank(1).extract(torch.from_numpy(wav), 24000).numpy()
        np.testing.assert_allclose(ours_mono, ref_mono, rtol=0, atol=TORCH_ATOL)


def test_matches_torch_on_fixture_audio(reference_dir: Path, feature_cases: list[str]) -> None:
    torch = pytest.importorskip("torch")
    from api.zipvoice import features as torch_features

    for name in feature_cases:
        wav, sr = read_wav(reference_dir / "audio" / f"{name}.wav")
        ours = VocosFbank(wav.shape[0]).extract(wav, sr)
        ref = torch_features.VocosFbank(wav.shape[0]).extract(torch.from_numpy(wav), sr).numpy()
        np.testing.assert_allclose(ours, ref, rtol=0, atol=ATOL, err_msg=name)


def test_filterbank_and_window_match_torch() -> None:
    torch = pytest.importorskip("torch")
    from api.zipvoice import features as torch_features
    from api.zipvoice.features_np import hann_window

    ref = torch_features.htk_mel_filterbank(513, 0.0, 12000.0, 100, 24000).numpy()
    np.testing.assert_allclose(htk_mel_filterbank(513, 0.0, 12000.0, 100, 24000), ref, rtol=0, atol=5e-5)
    np.testing.assert_allclose(hann_window(1024), torch.hann_window(1024).numpy(), rtol=0, atol=1e-6)
