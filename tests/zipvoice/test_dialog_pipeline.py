"""Dialog (mono) and dialog-stereo generation with the tiny fixture models.

The weights are random, so the audio is noise-like: these tests pin shapes, channel
layout, determinism, input validation and the token ids handed to ``model.sample``
(checked against the golden dialog sample cases), not audio quality.
"""

from __future__ import annotations

import inspect
import re
import wave
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from api.zipvoice.audio_prep import load_prompt, read_audio, to_int16_pcm
from api.zipvoice.dialog import (
    DialogPipeline,
    chunk_tokens_dialog,
    dialog_prompt_text,
    join_dialog_prompts,
    validate_dialog_text,
)
from api.zipvoice.pipeline import ZipVoicePipeline
from tests.zipvoice import golden


def _dialog_case(reference_dir: Path, channels: int) -> tuple[str, dict[str, Any]]:
    """The set's first dialog sample case with ``channels`` prompt channels."""
    for name in golden.sample_case_names():
        golden.require(name)
        spec = golden.sample_case(reference_dir, name)
        if golden.is_dialog_model(reference_dir, spec["model"]) and spec["num_channels"] == channels:
            return name, spec
    pytest.skip(f"the fixture set has no {channels}-channel dialog case")


@pytest.fixture(scope="module")
def mono_case(reference_dir: Path) -> tuple[str, dict[str, Any]]:
    return _dialog_case(reference_dir, 1)


@pytest.fixture(scope="module")
def stereo_case(reference_dir: Path) -> tuple[str, dict[str, Any]]:
    return _dialog_case(reference_dir, 2)


@pytest.fixture(scope="module")
def mono(reference_dir: Path, mono_case: tuple[str, dict[str, Any]]) -> DialogPipeline:
    model_dir = reference_dir / "models" / mono_case[1]["model"]
    return DialogPipeline.from_dirs(model_dir, reference_dir / golden.VOCODER_DIR)


@pytest.fixture(scope="module")
def stereo(reference_dir: Path, stereo_case: tuple[str, dict[str, Any]]) -> DialogPipeline:
    model_dir = reference_dir / "models" / stereo_case[1]["model"]
    return DialogPipeline.from_dirs(model_dir, reference_dir / golden.VOCODER_DIR)


@pytest.fixture(scope="module")
def mono_spec(mono_case: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """Text, prompt transcript, prompt wav and step count of the mono dialog case."""
    return mono_case[1]


@pytest.fixture(scope="module")
def stereo_spec(stereo_case: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return stereo_case[1]


def _rms(x: Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


# --------------------------------------------------------------------------- text helpers


@pytest.mark.parametrize(
    "text",
    ["[S1] Hi.", "  [S1] Hi. [S2] Hello! [S1] Bye.", "[S1]a[S2]b", "[S1] I [LAUGHS] see. [S2] Ok."],
)
def test_validate_accepts_alternating_turns(text: str) -> None:
    assert validate_dialog_text(text) == text.strip()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Hello there, no tags.", r"must start with the speaker tag \[S1\]"),
        ("", r"must start with the speaker tag \[S1\]"),
        ("[S2] Hi. [S1] Hello.", r"must start with the speaker tag \[S1\]"),
        ("Hi [S1] there.", r"must start with the speaker tag \[S1\]"),
        ("[S1] Hi. [S1] Again.", r"tag #2 is \[S1\]"),
        ("[S1] Hi. [S2] Yo. [S2] Again.", r"tag #3 is \[S2\]"),
    ],
)
def test_validate_rejects_bad_tags(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_dialog_text(text)


def test_validate_prompt_needs_both_speakers() -> None:
    both = "[S1] First speaker here. [S2] Second speaker here."
    assert validate_dialog_text(both, prompt=True) == both
    with pytest.raises(ValueError, match=r"prompt transcript must end with a \[S2\] turn"):
        validate_dialog_text("[S1] Only one speaker here.", prompt=True)


def test_dialog_prompt_text() -> None:
    assert dialog_prompt_text(" One. ", "Two.") == "[S1]One.[S2]Two."
    with pytest.raises(ValueError, match="must not contain speaker tags"):
        dialog_prompt_text("[S1] One.", "Two.")
    with pytest.raises(ValueError, match="speaker 2 prompt transcript is empty"):
        dialog_prompt_text("One.", "  ")


def test_chunk_tokens_dialog() -> None:
    tokens = ["[S1]", "a", "[S2]", "b", "[S1]", "c", "c", "[S2]", "d", "[S1]", "e"]
    assert chunk_tokens_dialog(tokens, max_tokens=100) == [tokens]
    assert chunk_tokens_dialog(tokens, max_tokens=5) == [
        ["[S1]", "a", "[S2]", "b"],
        ["[S1]", "c", "c", "[S2]", "d"],
        ["[S1]", "e"],
    ]
    # a too-long exchange stays whole; leading tokens before any [S1] form their own exchange
    assert chunk_tokens_dialog(["x", "[S1]", "a", "b", "c"], max_tokens=2) == [["x"], ["[S1]", "a", "b", "c"]]


# --------------------------------------------------------------------------- prompt layout


def test_join_dialog_prompts_layouts() -> None:
    a = torch.full((1, 3), 0.5)
    b = torch.full((1, 2), -0.25)
    st = torch.stack([torch.ones(4), -torch.ones(4)])

    assert torch.equal(join_dialog_prompts([a, b], 1), torch.tensor([[0.5, 0.5, 0.5, -0.25, -0.25]]))
    assert torch.equal(join_dialog_prompts([st], 1), torch.zeros(1, 4))  # averaged to mono

    two = join_dialog_prompts([a, b], 2)
    assert torch.equal(two, torch.tensor([[0.5, 0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, -0.25, -0.25]]))
    assert join_dialog_prompts([st], 2) is st
    assert join_dialog_prompts([st, st], 2).shape == (2, 8)

    with pytest.raises(ValueError, match="must be a 2-channel clip"):
        join_dialog_prompts([a], 2)
    with pytest.raises(ValueError, match="both be mono or both 2-channel"):
        join_dialog_prompts([a, st], 2)
    with pytest.raises(ValueError, match="one or two clips"):
        join_dialog_prompts([a, a, a], 1)


def test_stereo_vocoding_is_per_channel(stereo: DialogPipeline) -> None:
    """Features 0-99 feed the left channel, 100-199 the right, each through the vocoder."""

    class MeanVocoder:
        def decode(self, features: Tensor) -> Tensor:
            assert features.shape[1] == 100
            return features.mean(dim=1).repeat_interleave(256, dim=-1)

    pipe = DialogPipeline(stereo.model, stereo.tokenizer, MeanVocoder(), num_channels=2)
    pred = torch.cat([torch.full((2, 7, 100), 0.01), torch.full((2, 7, 100), -0.03)], dim=-1)
    wavs = pipe._vocode(pred, torch.tensor([7, 5]), prompt_rms=0.05)
    assert [tuple(w.shape) for w in wavs] == [(2, 7 * 256), (2, 5 * 256)]
    # /feat_scale -> 0.1 and -0.3; then x prompt_rms / target_rms = 0.5
    for w in wavs:
        assert torch.allclose(w[0], torch.tensor(0.05)) and torch.allclose(w[1], torch.tensor(-0.15))


# --------------------------------------------------------------------------- end to end


def _texts(spec: dict[str, Any]) -> tuple[str, str]:
    text = spec["texts"][0]
    assert len(spec["texts"]) == 1, "dialog cases generate one text"
    return text, spec["prompt_text"]


def test_dialog_mono_end_to_end_and_deterministic(
    mono: DialogPipeline, mono_spec: dict[str, Any], reference_dir: Path
) -> None:
    text, prompt_text = _texts(mono_spec)
    steps, seed = int(mono_spec["num_step"]), int(mono_spec["seed"])
    prompt = mono.prepare_prompt(reference_dir / mono_spec["prompt_wav"])
    assert prompt.features.shape[-1] == 100
    first = mono.generate(text, prompt_text, prompt, num_step=steps, seed=seed)
    again = mono.generate(text, prompt_text, prompt, num_step=steps, seed=seed)
    other = mono.generate(text, prompt_text, prompt, num_step=steps, seed=seed + 1)

    wav = first.wav
    assert wav.dtype == torch.float32 and wav.ndim == 2 and wav.shape[0] == 1
    assert wav.shape[1] > 0 and first.sampling_rate == 24000 and first.num_chunks == 1
    assert bool(torch.isfinite(wav).all()) and float(wav.abs().max()) <= 1.0
    assert _rms(wav) > 1e-4
    assert torch.equal(wav, again.wav)
    assert not torch.equal(wav, other.wav)


@pytest.mark.parametrize("channels", [1, 2])
def test_dialog_tokens_match_golden(
    channels: int, reference_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text path (punctuation, tokenizer, [S1] chunking) hands the golden ids to ``sample``."""
    case, spec = _dialog_case(reference_dir, channels)
    pipe = DialogPipeline.from_dirs(
        reference_dir / "models" / spec["model"], reference_dir / golden.VOCODER_DIR
    )
    g = golden.load_sample(reference_dir, case)
    tokens = g["tokens"][0][: int(g["tokens_lens"][0])].tolist()
    prompt_tokens = g["prompt_tokens"].tolist()
    feat_dim = g["prompt_features"].shape[-1]
    text, prompt_text = _texts(spec)
    calls: list[dict[str, Any]] = []
    real_sample = pipe.model.sample

    def spy(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_sample(**kwargs)

    monkeypatch.setattr(pipe.model, "sample", spy)
    guidance = float(spec["guidance_scale"])
    pipe.generate(
        text, prompt_text, reference_dir / spec["prompt_wav"], num_step=1, guidance_scale=guidance, seed=0
    )
    monkeypatch.undo()
    assert len(calls) == 1
    assert calls[0]["tokens"] == [tokens]
    assert calls[0]["prompt_tokens"] == [prompt_tokens]
    assert calls[0]["prompt_features"].shape[-1] == feat_dim
    assert calls[0]["options"].guidance_scale == guidance


def test_dialog_default_guidance_is_upstreams() -> None:
    """``infer_zipvoice_dialog.py`` defaults to guidance 1.5; so does ``generate``."""
    default = inspect.signature(DialogPipeline.generate).parameters["guidance_scale"].default
    assert default == 1.5


def test_dialog_multi_chunk(mono: DialogPipeline, mono_spec: dict[str, Any], reference_dir: Path) -> None:
    """Many turns are split at [S1] into several chunks and cross-faded into one stream."""
    text = " ".join(f"[S1] Turn number {i} is here. [S2] Reply number {i} follows." for i in range(12))
    result = mono.generate(
        text, mono_spec["prompt_text"], reference_dir / mono_spec["prompt_wav"], num_step=1, seed=5
    )
    assert result.num_chunks > 1
    assert result.wav.shape[0] == 1 and result.wav.shape[1] > 0


def test_dialog_stereo_two_channel_prompt(
    stereo: DialogPipeline, stereo_spec: dict[str, Any], reference_dir: Path
) -> None:
    text, prompt_text = _texts(stereo_spec)
    steps, seed = int(stereo_spec["num_step"]), int(stereo_spec["seed"])
    prompt_file = reference_dir / stereo_spec["prompt_wav"]
    result = stereo.generate(text, prompt_text, prompt_file, num_step=steps, seed=seed)
    wav = result.wav
    assert wav.dtype == torch.float32 and wav.shape[0] == 2 and wav.shape[1] > 0
    assert result.prompt.features.shape[-1] == 200
    assert _rms(wav[0]) > 1e-4 and _rms(wav[1]) > 1e-4
    assert not torch.equal(wav[0], wav[1])
    again = stereo.generate(text, prompt_text, prompt_file, num_step=steps, seed=seed)
    assert torch.equal(wav, again.wav)


def test_dialog_stereo_two_mono_prompts(
    stereo: DialogPipeline, stereo_spec: dict[str, Any], reference_dir: Path, tmp_path: Path
) -> None:
    text, prompt_text = _texts(stereo_spec)
    turns = golden.dialog_turns(prompt_text)
    steps, seed = int(stereo_spec["num_step"]), int(stereo_spec["seed"])
    both, rate = read_audio(reference_dir / stereo_spec["prompt_wav"])
    spk1, spk2 = both[0:1], both[1:2]
    prompt = stereo.prepare_prompt((spk1, spk2), rate)
    # speaker 1 fills the left channel first, speaker 2 the right channel afterwards
    assert prompt.wav.shape[0] == 2 and prompt.features.shape[-1] == 200

    result = stereo.generate(text, turns, prompt, num_step=steps, seed=seed)
    assert result.wav.shape[0] == 2 and result.wav.shape[1] > 0
    assert _rms(result.wav[0]) > 1e-4 and _rms(result.wav[1]) > 1e-4

    # the same pair given as two mono files (the clips are PCM16 already, so lossless)
    paths = []
    for i, clip in enumerate((spk1, spk2)):
        path = tmp_path / f"spk{i + 1}.wav"
        with wave.open(str(path), "wb") as wf:
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(rate)
            wf.writeframes(to_int16_pcm(clip).tobytes())
        paths.append(path)
    from_files = stereo.generate(text, turns, (paths[0], paths[1]), num_step=steps, seed=seed)
    assert torch.equal(from_files.wav, result.wav)


def test_dialog_mono_two_clip_prompt(
    mono: DialogPipeline, stereo_spec: dict[str, Any], reference_dir: Path
) -> None:
    text, prompt_text = _texts(stereo_spec)
    both, rate = read_audio(reference_dir / stereo_spec["prompt_wav"])
    result = mono.generate(
        text, golden.dialog_turns(prompt_text), (both[0:1], both[1:2]), rate, num_step=1, seed=1
    )
    assert result.wav.shape[0] == 1 and result.wav.shape[1] > 0


def test_generate_rejects_untagged_text(
    mono: DialogPipeline, mono_spec: dict[str, Any], reference_dir: Path
) -> None:
    text, prompt_text = _texts(mono_spec)
    prompt = reference_dir / mono_spec["prompt_wav"]
    untagged = re.sub(r"\s*\[S[12]\]\s*", " ", text).strip()
    with pytest.raises(ValueError, match=r"dialog text must start with the speaker tag \[S1\]"):
        mono.generate(untagged, prompt_text, prompt, num_step=1)
    untagged_prompt = " ".join(golden.dialog_turns(prompt_text))
    with pytest.raises(ValueError, match=r"prompt transcript must start with the speaker tag \[S1\]"):
        mono.generate(text, untagged_prompt, prompt, num_step=1)


def test_stereo_rejects_mono_single_prompt(
    stereo: DialogPipeline, stereo_spec: dict[str, Any], mono_spec: dict[str, Any], reference_dir: Path
) -> None:
    text, prompt_text = _texts(stereo_spec)
    mono_file = reference_dir / mono_spec["prompt_wav"]
    assert golden.wav_info(mono_file)[0] == 1
    with pytest.raises(ValueError, match="must be a 2-channel clip"):
        stereo.prepare_prompt(mono_file)
    mono_prompt = load_prompt(mono_file, num_channels=1)
    with pytest.raises(ValueError, match="needs 200"):
        stereo.generate(text, prompt_text, mono_prompt, num_step=1)


def test_channel_and_variant_checks(mono: DialogPipeline, stereo: DialogPipeline) -> None:
    with pytest.raises(ValueError, match="cannot generate 1-channel"):
        DialogPipeline(stereo.model, stereo.tokenizer, stereo.vocoder, num_channels=1)
    with pytest.raises(ValueError, match="cannot generate 2-channel"):
        DialogPipeline(mono.model, mono.tokenizer, mono.vocoder, num_channels=2)
    with pytest.raises(ValueError, match="supports num_channels"):
        ZipVoicePipeline(mono.model, mono.tokenizer, mono.vocoder, num_channels=2)
