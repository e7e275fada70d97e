"""Prompt preparation and output post-processing vs the end-to-end goldens (README 3e).

Cases, prompts, target RMS and feature scale come from the set's ``golden/cases.json``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from api.zipvoice.audio_prep import (
    cross_fade_concat,
    features_to_vocoder_input,
    finalize_wav,
    prepare_prompt,
    read_audio,
    remove_silence,
    restore_volume,
    rms_norm,
    synthesize_features_to_wav,
    to_int16_pcm,
)
from api.zipvoice.vocos import Vocos, load_vocos
from tests.zipvoice import golden

LOGMEL_ATOL = 2e-3  # log-mel tolerance (README 4)
VOC_ATOL = 1e-5
WAV_ATOL = 3.1e-5  # one int16 step (pydub truncation)
WAV_MAX_DIFF_FRACTION = 1e-3


@pytest.fixture(scope="module")
def vocos(reference_dir: Path) -> Vocos:
    return load_vocos(reference_dir / golden.VOCODER_DIR)


def _assert_wav_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    diff = np.abs(ours - ref)
    assert diff.max() <= WAV_ATOL
    assert (diff > 0).mean() < WAV_MAX_DIFF_FRACTION


def _case(reference_dir: Path, case: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    return golden.e2e_case(reference_dir, case), golden.load_e2e(reference_dir, case)


@pytest.mark.parametrize("case", golden.e2e_case_names())
def test_prompt_path(reference_dir: Path, case: str) -> None:
    spec, g = _case(reference_dir, case)
    prompt_file = reference_dir / spec["prompt_wav"]
    wav, sr = read_audio(prompt_file)
    channels, frames, rate = golden.wav_info(prompt_file)
    assert sr == rate == spec["sampling_rate"] and wav.shape == (channels, frames)
    feat_scale, target_rms = float(spec["feat_scale"]), float(spec["target_rms"])

    desilenced = remove_silence(wav, sr, only_edge=False, trail_sil_ms=200)
    assert desilenced.shape == g["prompt_wav_desilenced"].shape
    np.testing.assert_allclose(desilenced.numpy(), g["prompt_wav_desilenced"], rtol=0, atol=WAV_ATOL)

    normed, rms = rms_norm(desilenced, target_rms)
    np.testing.assert_allclose(rms, float(g["prompt_rms"]), rtol=1e-6)
    np.testing.assert_allclose(normed.numpy(), g["prompt_wav_processed"], rtol=0, atol=1e-6)

    prepared = prepare_prompt(wav, sr, num_channels=1, target_rms=target_rms, feat_scale=feat_scale)
    assert prepared.rms == pytest.approx(float(g["prompt_rms"]), rel=1e-6)
    np.testing.assert_allclose(prepared.wav.numpy(), g["prompt_wav_processed"], rtol=0, atol=1e-6)
    assert tuple(prepared.features.shape) == g["sample_prompt_features"].shape
    assert prepared.num_frames == int(g["sample_prompt_features_lens"][0])
    np.testing.assert_allclose(
        prepared.features[0].numpy() / feat_scale, g["prompt_fbank"], rtol=0, atol=LOGMEL_ATOL
    )
    np.testing.assert_allclose(
        prepared.features.numpy(), g["sample_prompt_features"], rtol=0, atol=LOGMEL_ATOL * feat_scale
    )


@pytest.mark.parametrize("case", golden.e2e_case_names())
def test_output_path(reference_dir: Path, vocos: Vocos, case: str) -> None:
    spec, g = _case(reference_dir, case)
    feat_scale, target_rms = float(spec["feat_scale"]), float(spec["target_rms"])
    pred = torch.from_numpy(g["pred_features"])
    vin = features_to_vocoder_input(pred, feat_scale)
    np.testing.assert_allclose(vin.numpy(), g["vocoder_in"], rtol=1e-6, atol=1e-6)

    raw = vocos.decode(vin)
    np.testing.assert_allclose(raw.numpy(), g["vocoder_out"], rtol=0, atol=VOC_ATOL)

    # from the stored raw vocoder output: clamp, volume restore, edge trimming
    restored = restore_volume(torch.from_numpy(g["vocoder_out"]), float(g["prompt_rms"]), target_rms)
    final = finalize_wav(restored)
    _assert_wav_close(final.numpy(), g["wav"])
    # pydub slices by whole milliseconds and pads the last one with zeros
    per_ms = int(spec["sampling_rate"]) // 1000
    assert g["wav"].shape[-1] == math.ceil(g["vocoder_out"].shape[-1] / per_ms) * per_ms

    # the same through the batch helper, starting from model.sample's output
    wavs = synthesize_features_to_wav(
        vocos,
        pred,
        torch.from_numpy(g["pred_features_lens"]),
        float(g["prompt_rms"]),
        target_rms,
        feat_scale,
    )
    assert len(wavs) == 1
    final2 = finalize_wav(cross_fade_concat(wavs))
    _assert_wav_close(final2.numpy(), g["wav"])
    assert np.array_equal(to_int16_pcm(final2)[:, 0].astype(np.float32) / 32768, final2[0].numpy())


def test_trailing_silence_length_follows_pydub() -> None:
    # pydub makes 200 ms of silence at 11025 Hz (2205 frames) and resamples: 4798 frames at 24 kHz.
    loud = torch.full((1, 24000), 0.5)
    out = remove_silence(loud, 24000, only_edge=True, trail_sil_ms=200)
    assert out.shape == (1, 24000 + 4798)
    assert torch.all(out[:, 24000:] == 0)


def test_long_internal_silence_is_shortened() -> None:
    sr = 24000
    t = torch.arange(sr) / sr
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * t)[None]
    wav = torch.cat([tone, torch.zeros(1, int(2.5 * sr)), tone], dim=-1)
    kept = remove_silence(wav, sr, only_edge=True)
    cut = remove_silence(wav, sr, only_edge=False)
    assert kept.shape[-1] == wav.shape[-1]
    # 2.5 s gap -> 1 s kept on each side of the speech = 2 s
    assert cut.shape[-1] == wav.shape[-1] - sr // 2


def test_edge_silence_trimmed_to_100ms() -> None:
    sr = 24000
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * torch.arange(sr) / sr)[None]
    wav = torch.cat([torch.zeros(1, sr // 2), tone, torch.zeros(1, sr // 2)], dim=-1)
    out = remove_silence(wav, sr, only_edge=True)
    assert out.shape[-1] == sr + 2 * (sr // 10)


@pytest.mark.parametrize("stem", golden.feature_prompts())
def test_prompt_features_per_channel_count(reference_dir: Path, stem: str) -> None:
    """Raw-evaluation prompt features: one 100-bin block per channel asked for."""
    wav, sr = read_audio(reference_dir / "audio" / f"{stem}.wav")
    expected = golden.load_npz(reference_dir, "features")[f"{stem}_fbank"].shape
    mono = prepare_prompt(wav, sr, num_channels=1, remove_silences=False)
    assert mono.features.shape == (1, expected[0], 100)
    if wav.shape[0] == 2:
        stereo = prepare_prompt(wav, sr, num_channels=2, remove_silences=False)
        assert stereo.features.shape == (1, *expected) == (1, expected[0], 200)
        with pytest.raises(ValueError):
            prepare_prompt(wav[:1], sr, num_channels=2)
    else:
        with pytest.raises(ValueError):
            prepare_prompt(wav, sr, num_channels=2)


def test_resample_to_24k() -> None:
    sr = 16000
    wav = 0.3 * torch.sin(2 * torch.pi * 440 * torch.arange(sr) / sr)[None]
    prepared = prepare_prompt(wav, sr, remove_silences=False)
    assert prepared.wav.shape == (1, 24000)
    assert prepared.features.shape == (1, (24000 + 128) // 256, 100)


def test_read_audio_non_wav_via_pyav() -> None:
    import io

    import av

    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((2, 16000)) * 3000).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=16000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1).copy(), format="s16", layout="stereo")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    wav, sr = read_audio(buf.getvalue())
    assert sr == 16000
    np.testing.assert_array_equal(wav.numpy(), pcm.astype(np.float32) / 32768)
