"""Two-speaker dialog generation for ZipVoice-Dialog (mono) and ZipVoice-Dialog-Stereo.

Differences from plain sentence generation (:class:`api.zipvoice.pipeline.ZipVoicePipeline`),
following upstream ``infer_zipvoice_dialog.py``:

* texts are written as speaker turns, ``"[S1] Hi there. [S2] Hello! [S1] ..."``;
* the text is chunked at ``[S1]`` tags (whole exchanges stay together) so that prompt +
  chunk stay around 40 s, instead of at punctuation with a 25 s target;
* the prompt is either one clip holding both speakers (mono, or for the stereo model a
  2-channel clip with speaker 1 on channel 0 and speaker 2 on channel 1), or two clips,
  one per speaker, each with its own transcript. Two mono clips for the stereo model are
  laid out in time on separate channels (speaker 1 on the left first, then speaker 2 on
  the right) over digital silence, generated here rather than read from upstream's
  ``silence.wav``; the mono model averages each clip to mono and joins them in time;
* the stereo model predicts 200-dim features (channel-major: 0-99 speaker 1, 100-199
  speaker 2); each half is vocoded separately, giving ``(2, n)`` audio.

Speaker tags: the model gives each token the speaker of the *parity* of the ``[S1]``/``[S2]``
tags seen so far in prompt + text (it never looks at which tag it is). So tags must
alternate starting with ``[S1]``, and the prompt transcript must hold an even number of
turns; :func:`validate_dialog_text` enforces this (upstream only asserts that the text
starts with ``[S1]`` and silently swaps speakers otherwise).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from api.zipvoice.audio_prep import (
    SAMPLING_RATE,
    PreparedPrompt,
    Vocoder,
    prepare_prompt,
    read_audio,
    resample,
    synthesize_features_to_wav,
)
from api.zipvoice.pipeline import GenerationResult, SpeechModel, Tokenizer, ZipVoicePipeline, pack_units

SPEAKER_1 = "[S1]"
SPEAKER_2 = "[S2]"
DIALOG_CHUNK_TARGET_S = 40.0
DIALOG_GUIDANCE_SCALE = 1.5  # upstream infer_zipvoice_dialog.py default
MEL_DIM = 100

AudioSource = Tensor | str | Path | bytes
DialogPrompt = PreparedPrompt | AudioSource | tuple[AudioSource, AudioSource]

_VARIANT_CHANNELS = {"zipvoice_dialog": 1, "zipvoice_dialog_stereo": 2}
_TAG_RE = re.compile(r"\[S[12]\]")


def validate_dialog_text(text: str, *, prompt: bool = False) -> str:
    """Check dialog speaker tags and return the stripped text.

    Raises ``ValueError`` unless the text starts with ``[S1]`` and its tags alternate
    ``[S1]``, ``[S2]``, ``[S1]``, ... With ``prompt=True`` (a prompt transcript) it must also
    end on a ``[S2]`` turn, so that the generated text's ``[S1]`` maps to speaker 1.
    """
    what = "prompt transcript" if prompt else "dialog text"
    stripped = text.strip()
    if not stripped.startswith(SPEAKER_1):
        raise ValueError(
            f"{what} must start with the speaker tag {SPEAKER_1} and mark every turn with "
            f"{SPEAKER_1}/{SPEAKER_2}, e.g. '[S1] Hi. [S2] Hello!'; got {_preview(text)}"
        )
    tags = _TAG_RE.findall(stripped)
    for i, tag in enumerate(tags):
        expected = SPEAKER_1 if i % 2 == 0 else SPEAKER_2
        if tag != expected:
            raise ValueError(
                f"{what}: speaker tags must alternate {SPEAKER_1}, {SPEAKER_2}, {SPEAKER_1}, ...; "
                f"tag #{i + 1} is {tag} (the model assigns speakers by turn parity, so a "
                f"repeated tag would switch speakers); got {_preview(text)}"
            )
    if prompt and len(tags) % 2:
        raise ValueError(
            f"{what} must end with a {SPEAKER_2} turn (both speakers, even number of turns); "
            f"got {_preview(text)}"
        )
    return stripped


def _preview(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def dialog_prompt_text(speaker1_text: str, speaker2_text: str) -> str:
    """Transcript of a two-clip prompt: ``[S1]<speaker 1>[S2]<speaker 2>`` (as upstream)."""
    for name, value in (("speaker 1", speaker1_text), ("speaker 2", speaker2_text)):
        if _TAG_RE.search(value):
            raise ValueError(f"the {name} prompt transcript must not contain speaker tags")
        if not value.strip():
            raise ValueError(f"the {name} prompt transcript is empty")
    return f"{SPEAKER_1}{speaker1_text.strip()}{SPEAKER_2}{speaker2_text.strip()}"


def chunk_tokens_dialog(tokens: list[str], max_tokens: int = 100) -> list[list[str]]:
    """Cut before every ``[S1]`` token, then greedily merge exchanges into chunks of at most
    ``max_tokens`` (an exchange longer than that stays one chunk)."""
    exchanges: list[list[str]] = []
    current: list[str] = []
    for tok in tokens:
        if tok == SPEAKER_1 and current:
            exchanges.append(current)
            current = []
        current.append(tok)
    if current:
        exchanges.append(current)

    return pack_units(exchanges, max_tokens)


def join_dialog_prompts(clips: list[Tensor], num_channels: int) -> Tensor:
    """Combine one or two 24 kHz ``(C, T)`` prompt clips into the model's prompt layout.

    Mono (``num_channels=1``): each clip is averaged to mono, clips are joined in time.
    Stereo: one clip must be 2-channel; two 2-channel clips are joined in time; two mono
    clips become ``(2, T1 + T2)`` with speaker 1 on channel 0 during ``[0, T1)`` and
    speaker 2 on channel 1 during ``[T1, T1 + T2)``, zeros elsewhere.
    """
    if len(clips) not in (1, 2):
        raise ValueError(f"a dialog prompt is one or two clips, got {len(clips)}")
    clips = [c.unsqueeze(0) if c.ndim == 1 else c for c in clips]
    if any(c.shape[-1] == 0 for c in clips):
        raise ValueError("a dialog prompt clip is empty")
    if num_channels == 1:
        return torch.cat([c if c.shape[0] == 1 else c.mean(dim=0, keepdim=True) for c in clips], dim=1)
    if num_channels != 2:
        raise ValueError(f"num_channels must be 1 or 2, got {num_channels}")
    channels = [c.shape[0] for c in clips]
    if len(clips) == 1:
        if channels[0] != 2:
            raise ValueError(
                "a single stereo-dialog prompt must be a 2-channel clip (speaker 1 left, speaker 2 "
                f"right), got {channels[0]} channel(s); or pass one mono clip per speaker"
            )
        return clips[0]
    if channels == [2, 2]:
        return torch.cat(clips, dim=1)
    if channels == [1, 1]:
        first, second = clips
        n1 = first.shape[1]
        out = first.new_zeros(2, n1 + second.shape[1])
        out[0, :n1] = first[0]
        out[1, n1:] = second[0]
        return out
    raise ValueError(f"two stereo-dialog prompt clips must both be mono or both 2-channel, got {channels}")


class DialogPipeline(ZipVoicePipeline):
    """Dialog text + two-speaker prompt -> 24 kHz audio, mono (``num_channels=1``, model
    ``zipvoice_dialog``) or ``(2, n)`` stereo (``num_channels=2``, ``zipvoice_dialog_stereo``)."""

    chunk_target_s = DIALOG_CHUNK_TARGET_S
    supported_channels = (1, 2)

    def __init__(
        self,
        model: SpeechModel,
        tokenizer: Tokenizer,
        vocoder: Vocoder,
        *,
        num_channels: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, tokenizer, vocoder, num_channels=num_channels, **kwargs)
        variant = getattr(model, "variant", None)
        expected = _VARIANT_CHANNELS.get(variant) if isinstance(variant, str) else None
        if variant is not None and expected != num_channels:
            raise ValueError(f"a {variant!r} model cannot generate {num_channels}-channel dialogs")
        for attr in ("spk_a_id", "spk_b_id"):
            model_id, tok_id = getattr(model, attr, None), getattr(tokenizer, attr, None)
            if model_id is not None and tok_id is not None and model_id != tok_id:
                raise ValueError(f"model {attr}={model_id} does not match the tokenizer's {tok_id}")

    @classmethod
    def from_dirs(
        cls, model_dir: str | Path, vocoder_dir: str | Path, device: str | torch.device = "cpu"
    ) -> DialogPipeline:
        """Load a ``zipvoice_dialog``/``zipvoice_dialog_stereo`` folder (model.pt, model.json,
        tokens.txt) and a Vocos folder; the channel count follows the model variant."""
        from api.zipvoice.model import load_model
        from api.zipvoice.tokenizer import DialogTokenizer
        from api.zipvoice.vocos import load_vocos

        model = load_model(model_dir, device=device)
        variant = getattr(model, "variant", "")
        if variant not in ("zipvoice_dialog", "zipvoice_dialog_stereo"):
            raise ValueError(f"{model_dir} holds a {variant!r} model, not a dialog model")
        tokenizer = DialogTokenizer(Path(model_dir) / "tokens.txt")
        vocoder = load_vocos(vocoder_dir, device=device)
        channels = 2 if variant == "zipvoice_dialog_stereo" else 1
        return cls(model, tokenizer, vocoder, num_channels=channels, device=device)

    def _load_clip(self, source: AudioSource, sampling_rate: int | None) -> Tensor:
        if isinstance(source, Tensor):
            if sampling_rate is None:
                raise ValueError("sampling_rate is required for a tensor prompt")
            audio, rate = source, sampling_rate
        else:
            audio, rate = read_audio(source)
        if audio.ndim == 1:
            audio = audio.unsqueeze(0)
        return resample(audio.to(torch.float32), rate, SAMPLING_RATE)

    def prepare_prompt(
        self,
        wav: AudioSource | tuple[AudioSource, AudioSource],
        sampling_rate: int | None = None,
    ) -> PreparedPrompt:
        """Prepare one two-speaker clip, or a ``(speaker 1, speaker 2)`` pair of clips
        (``sampling_rate`` applies to tensor clips)."""
        sources = list(wav) if isinstance(wav, tuple) else [wav]
        clips = [self._load_clip(s, sampling_rate) for s in sources]
        joined = join_dialog_prompts(clips, self.num_channels)
        return prepare_prompt(
            joined,
            SAMPLING_RATE,
            num_channels=self.num_channels,
            target_rms=self.target_rms,
            feat_scale=self.feat_scale,
            extractor=self.extractor,
        )

    def _check_texts(self, text: str, prompt_text: str) -> None:
        validate_dialog_text(text)
        validate_dialog_text(prompt_text, prompt=True)

    def _chunk_tokens(self, tokens: list[str], max_tokens: int) -> list[list[str]]:
        return chunk_tokens_dialog(tokens, max_tokens=max_tokens)

    def _vocode(self, pred: Tensor, pred_lens: Tensor, prompt_rms: float) -> list[Tensor]:
        if self.num_channels == 1:
            return super()._vocode(pred, pred_lens, prompt_rms)
        halves = [
            synthesize_features_to_wav(
                self.vocoder,
                pred[..., ch * MEL_DIM : (ch + 1) * MEL_DIM],
                pred_lens,
                prompt_rms,
                self.target_rms,
                self.feat_scale,
            )
            for ch in range(self.num_channels)
        ]
        return [torch.cat(per_item, dim=0) for per_item in zip(*halves, strict=True)]

    def generate(
        self,
        text: str,
        prompt_text: str | tuple[str, str],
        prompt: DialogPrompt,
        prompt_sampling_rate: int | None = None,
        *,
        num_step: int = 16,
        guidance_scale: float = DIALOG_GUIDANCE_SCALE,
        speed: float = 1.0,
        t_shift: float = 0.5,
        seed: int | None = None,
        remove_long_sil: bool = False,
    ) -> GenerationResult:
        """Synthesize a ``[S1]``/``[S2]`` dialog; ``wav`` is ``(num_channels, n)`` float32.

        ``prompt_text`` is the tagged transcript of a one-clip prompt, or a pair of plain
        transcripts matching a ``(speaker 1, speaker 2)`` pair of clips.
        """
        if isinstance(prompt_text, tuple):
            prompt_text = dialog_prompt_text(*prompt_text)
        self._check_texts(text, prompt_text)
        if not isinstance(prompt, PreparedPrompt):
            prompt = self.prepare_prompt(prompt, prompt_sampling_rate)
        if prompt.features.shape[-1] != MEL_DIM * self.num_channels:
            raise ValueError(
                f"prompt features have {prompt.features.shape[-1]} dims; this {self.num_channels}-channel "
                f"pipeline needs {MEL_DIM * self.num_channels} (prepare it with this pipeline)"
            )
        return super().generate(
            text,
            prompt_text,
            prompt,
            num_step=num_step,
            guidance_scale=guidance_scale,
            speed=speed,
            t_shift=t_shift,
            seed=seed,
            remove_long_sil=remove_long_sil,
        )
