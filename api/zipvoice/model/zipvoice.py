"""The four ZipVoice model variants (inference only) and their ``sample`` entry point."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from api.zipvoice.model.sampler import (
    StepCallback,
    StepFn,
    distill_step,
    euler_sample,
    get_timesteps,
    guided_step,
)
from api.zipvoice.model.zipformer import TTSZipformer, TTSZipformerTwoStream
from api.zipvoice.sampling import DEFAULT_OPTIONS, SamplerOptions


@dataclass(frozen=True)
class ModelConfig:
    """The ``"model"`` section of ``model.json`` (defaults = the released base config)."""

    fm_decoder_downsampling_factor: tuple[int, ...] = (1, 2, 4, 2, 1)
    fm_decoder_num_layers: tuple[int, ...] = (2, 2, 4, 4, 4)
    fm_decoder_cnn_module_kernel: tuple[int, ...] = (31, 15, 7, 15, 31)
    fm_decoder_feedforward_dim: int = 1536
    fm_decoder_num_heads: int = 4
    fm_decoder_dim: int = 512
    text_encoder_num_layers: int = 4
    text_encoder_feedforward_dim: int = 512
    text_encoder_cnn_module_kernel: int = 9
    text_encoder_num_heads: int = 4
    text_encoder_dim: int = 192
    query_head_dim: int = 32
    value_head_dim: int = 12
    pos_head_dim: int = 4
    pos_dim: int = 48
    time_embed_dim: int = 192
    text_embed_dim: int = 192
    feat_dim: int = 100

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a ``model.json`` ``"model"`` dict; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the field order of the official ``zipvoice_base.json``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass
class SampleOutput:
    """Everything ``sample`` computes; intermediates are filled when ``keep_steps`` is set."""

    pred_features: Tensor
    pred_features_lens: Tensor
    pred_prompt_features: Tensor
    pred_prompt_features_lens: Tensor
    text_condition: Tensor
    padding_mask: Tensor
    speech_condition: Tensor
    x0: Tensor
    timesteps: Tensor
    step_x: list[Tensor] = field(default_factory=list)
    step_v: list[Tensor] = field(default_factory=list)


def make_pad_mask(lengths: Tensor, max_len: int = 0) -> Tensor:
    """``(B, max(max_len, lengths.max()))`` bool mask, True at padded positions."""
    max_len = max(max_len, int(lengths.max()))
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


class ZipVoice(nn.Module):
    """Zero-shot flow-matching TTS: text encoder + Zipformer flow-matching decoder."""

    variant = "zipvoice"

    def __init__(self, config: ModelConfig | None = None, vocab_size: int = 26, pad_id: int = 0) -> None:
        super().__init__()
        self.config = cfg = config or ModelConfig()
        self.feat_dim = cfg.feat_dim
        self.pad_id = pad_id
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, cfg.text_embed_dim)
        self.text_encoder = TTSZipformer(
            in_dim=cfg.text_embed_dim,
            out_dim=cfg.feat_dim,
            downsampling_factor=1,
            num_encoder_layers=cfg.text_encoder_num_layers,
            cnn_module_kernel=cfg.text_encoder_cnn_module_kernel,
            encoder_dim=cfg.text_encoder_dim,
            feedforward_dim=cfg.text_encoder_feedforward_dim,
            num_heads=cfg.text_encoder_num_heads,
            **self._head_kwargs(),
            use_time_embed=False,
        )
        self.fm_decoder: TTSZipformer = self._build_decoder()

    def _head_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "query_head_dim": cfg.query_head_dim,
            "pos_head_dim": cfg.pos_head_dim,
            "value_head_dim": cfg.value_head_dim,
            "pos_dim": cfg.pos_dim,
        }

    def _decoder_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "downsampling_factor": cfg.fm_decoder_downsampling_factor,
            "num_encoder_layers": cfg.fm_decoder_num_layers,
            "cnn_module_kernel": cfg.fm_decoder_cnn_module_kernel,
            "encoder_dim": cfg.fm_decoder_dim,
            "feedforward_dim": cfg.fm_decoder_feedforward_dim,
            "num_heads": cfg.fm_decoder_num_heads,
            "use_time_embed": True,
            "time_embed_dim": cfg.time_embed_dim,
            **self._head_kwargs(),
        }

    def _build_decoder(self) -> TTSZipformer:
        return TTSZipformer(in_dim=3 * self.feat_dim, out_dim=self.feat_dim, **self._decoder_kwargs())

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    # ----- text side -------------------------------------------------------------------------

    def embed_tokens(self, tokens_padded: Tensor, tokens_lens: Tensor) -> Tensor:
        """Token ids ``(B, S)`` (pad-filled) -> text-encoder output ``(B, S, feat_dim)``."""
        padding_mask = make_pad_mask(tokens_lens, tokens_padded.shape[1])
        return self.text_encoder(self.embed(tokens_padded), t=None, padding_mask=padding_mask)

    def forward_text_embed(self, tokens: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """Encode token lists; every row gets one trailing pad token. Returns (embed, lens)."""
        width = max(len(seq) for seq in tokens) + 1
        padded = torch.full((len(tokens), width), self.pad_id, dtype=torch.int64)
        for i, seq in enumerate(tokens):
            padded[i, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.int64)
        padded = padded.to(self.device)
        lens = torch.tensor([len(seq) for seq in tokens], dtype=torch.int64, device=self.device)
        return self.embed_tokens(padded, lens), lens

    @staticmethod
    def forward_text_condition(
        embed: Tensor, tokens_lens: Tensor, features_lens: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Spread token embeddings uniformly over frames: each token gets ``len // n_tokens`` frames,
        the remaining frames take the trailing pad embedding. Returns (text_condition, padding_mask).
        """
        num_frames = int(features_lens.max())
        padding_mask = make_pad_mask(features_lens, num_frames)
        frames_per_token = torch.div(features_lens, tokens_lens, rounding_mode="floor").to(embed.device)
        lens = tokens_lens.to(embed.device)
        frame = torch.arange(num_frames, device=embed.device)[None, :]
        safe = frames_per_token.clamp(min=1)[:, None]
        index = torch.where(
            frames_per_token[:, None] > 0, torch.minimum(frame // safe, lens[:, None]), lens[:, None]
        )
        text_condition = torch.gather(embed, 1, index.unsqueeze(-1).expand(-1, -1, embed.shape[-1]))
        return text_condition, padding_mask

    def forward_text_inference_ratio_duration(
        self,
        tokens: Sequence[Sequence[int]],
        prompt_tokens: Sequence[Sequence[int]],
        prompt_features_lens: Tensor,
        speed: float,
    ) -> tuple[Tensor, Tensor]:
        """Text condition with the length predicted from the prompt's frames-per-token ratio."""
        cat_tokens = [list(p) + list(t) for p, t in zip(prompt_tokens, tokens, strict=True)]
        prompt_lens = torch.tensor([len(p) for p in prompt_tokens], dtype=torch.int64, device=self.device)
        text_lens = torch.tensor([len(t) for t in tokens], dtype=torch.int64, device=self.device)
        embed, cat_lens = self.forward_text_embed(cat_tokens)
        prompt_features_lens = prompt_features_lens.to(self.device)
        features_lens = prompt_features_lens + torch.ceil(
            prompt_features_lens / prompt_lens * text_lens / float(speed)
        ).to(torch.int64)
        return self.forward_text_condition(embed, cat_lens, features_lens)

    def forward_text_inference_gt_duration(
        self,
        tokens: Sequence[Sequence[int]],
        features_lens: Tensor,
        prompt_tokens: Sequence[Sequence[int]],
        prompt_features_lens: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Text condition for a given number of generated frames per utterance."""
        cat_tokens = [list(p) + list(t) for p, t in zip(prompt_tokens, tokens, strict=True)]
        embed, cat_lens = self.forward_text_embed(cat_tokens)
        total = prompt_features_lens.to(self.device) + features_lens.to(self.device)
        return self.forward_text_condition(embed, cat_lens, total)

    # ----- decoder side ----------------------------------------------------------------------

    def forward_fm_decoder(
        self,
        t: Tensor,
        xt: Tensor,
        text_condition: Tensor,
        speech_condition: Tensor,
        padding_mask: Tensor | None = None,
        guidance_scale: Tensor | None = None,
    ) -> Tensor:
        """One decoder evaluation: velocity ``(B, T, F)`` at time ``t`` (0-dim or (B,1,1)).

        Inputs are cast to the model dtype; the velocity is returned in ``xt``'s dtype, so the
        ODE state can stay float32 with a reduced-precision model.
        """
        dtype = self.dtype
        x = torch.cat([xt.to(dtype), text_condition.to(dtype), speech_condition.to(dtype)], dim=2)
        batch = x.shape[0]
        t = t.reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if guidance_scale is not None:
            guidance_scale = guidance_scale.reshape(-1)
            if guidance_scale.numel() == 1:
                guidance_scale = guidance_scale.expand(batch)
        v = self.fm_decoder(x, t=t, padding_mask=padding_mask, guidance_scale=guidance_scale)
        return v.to(xt.dtype)

    def make_step_fn(
        self,
        text_condition: Tensor,
        speech_condition: Tensor,
        padding_mask: Tensor | None,
        guidance_scale: float | Tensor,
    ) -> StepFn:
        """The guided velocity function used by the Euler sampler."""
        return guided_step(
            self.forward_fm_decoder, text_condition, speech_condition, padding_mask, guidance_scale
        )

    # ----- sampling --------------------------------------------------------------------------

    def sample(
        self,
        tokens: Sequence[Sequence[int]],
        prompt_tokens: Sequence[Sequence[int]],
        prompt_features: Tensor,
        prompt_features_lens: Tensor,
        options: SamplerOptions = DEFAULT_OPTIONS,
        *,
        x0: Tensor | None = None,
        generator: torch.Generator | None = None,
        features_lens: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Generate features for ``tokens`` in the voice of the prompt.

        Returns ``(pred_features (B, T', F) zero-padded, pred_features_lens (B,))``. The initial
        noise is one ``torch.randn(B, T, F)`` draw (from ``generator`` or the global RNG) unless
        ``x0`` is given.
        """
        out = self.sample_detailed(
            tokens,
            prompt_tokens,
            prompt_features,
            prompt_features_lens,
            options,
            x0=x0,
            generator=generator,
            features_lens=features_lens,
        )
        return out.pred_features, out.pred_features_lens

    @torch.inference_mode()
    def sample_detailed(
        self,
        tokens: Sequence[Sequence[int]],
        prompt_tokens: Sequence[Sequence[int]],
        prompt_features: Tensor,
        prompt_features_lens: Tensor,
        options: SamplerOptions = DEFAULT_OPTIONS,
        *,
        x0: Tensor | None = None,
        generator: torch.Generator | None = None,
        features_lens: Tensor | None = None,
        keep_steps: bool = False,
        step_fn: StepFn | None = None,
    ) -> SampleOutput:
        """Like :meth:`sample` but returns all intermediates (``keep_steps`` keeps per-step x/v).

        ``step_fn`` replaces the PyTorch decoder step (e.g. an ONNX/TensorRT engine).
        """
        if len(tokens) != len(prompt_tokens):
            raise ValueError("tokens and prompt_tokens must have the same batch size")
        prompt_features = prompt_features.to(device=self.device, dtype=self.dtype)
        prompt_features_lens = prompt_features_lens.to(self.device)
        speed, duration = options.speed, options.duration
        if duration == "predict":
            text_condition, padding_mask = self.forward_text_inference_ratio_duration(
                tokens, prompt_tokens, prompt_features_lens, speed
            )
        elif duration == "real":
            if features_lens is None:
                raise ValueError('duration="real" needs features_lens')
            text_condition, padding_mask = self.forward_text_inference_gt_duration(
                tokens, features_lens, prompt_tokens, prompt_features_lens
            )
        else:
            raise ValueError(f"duration must be 'predict' or 'real', got {duration!r}")
        batch, num_frames, _ = text_condition.shape
        feat = prompt_features.shape[-1]

        speech_condition = prompt_features.new_zeros(batch, num_frames, feat)
        width = min(prompt_features.shape[1], num_frames)
        speech_condition[:, :width] = prompt_features[:, :width]
        speech_condition.masked_fill_(make_pad_mask(prompt_features_lens, num_frames).unsqueeze(-1), 0.0)

        if x0 is None:
            x0 = torch.randn(batch, num_frames, feat, generator=generator, device=self.device)
        if x0.shape != (batch, num_frames, feat):
            raise ValueError(f"x0 must have shape {(batch, num_frames, feat)}, got {tuple(x0.shape)}")
        x0 = x0.to(device=self.device, dtype=torch.float32)

        if step_fn is None:
            # Without any padding the mask is a no-op; dropping it skips the masking passes.
            decoder_mask = padding_mask if bool(padding_mask.any()) else None
            step_fn = self.make_step_fn(
                text_condition, speech_condition, decoder_mask, options.guidance_scale
            )
        num_step = options.num_step
        timesteps = get_timesteps(num_step, float(options.t_shift), device=self.device)
        step_x: list[Tensor] = []
        step_v: list[Tensor] = []
        callback: StepCallback | None = None
        if keep_steps:

            def callback(k: int, t: Tensor, x: Tensor, v: Tensor) -> None:
                step_x.append(x)
                step_v.append(v)

        x1 = euler_sample(step_fn, x0, num_step, timesteps=timesteps, callback=callback)

        gen_lens = (~padding_mask).sum(-1) - prompt_features_lens
        pred = x1.new_zeros(batch, int(gen_lens.max()), feat)
        pred_prompt = x1.new_zeros(batch, int(prompt_features_lens.max()), feat)
        for i in range(batch):
            start, length = int(prompt_features_lens[i]), int(gen_lens[i])
            pred[i, :length] = x1[i, start : start + length]
            pred_prompt[i, :start] = x1[i, :start]
        return SampleOutput(
            pred_features=pred,
            pred_features_lens=gen_lens,
            pred_prompt_features=pred_prompt,
            pred_prompt_features_lens=prompt_features_lens,
            text_condition=text_condition,
            padding_mask=padding_mask,
            speech_condition=speech_condition,
            x0=x0,
            timesteps=timesteps,
            step_x=step_x,
            step_v=step_v,
        )


class ZipVoiceDistill(ZipVoice):
    """ZipVoice-Distill: the decoder takes the guidance scale as an input embedding."""

    variant = "zipvoice_distill"

    def _build_decoder(self) -> TTSZipformer:
        return TTSZipformer(
            in_dim=3 * self.feat_dim,
            out_dim=self.feat_dim,
            use_guidance_scale_embed=True,
            **self._decoder_kwargs(),
        )

    def make_step_fn(
        self,
        text_condition: Tensor,
        speech_condition: Tensor,
        padding_mask: Tensor | None,
        guidance_scale: float | Tensor,
    ) -> StepFn:
        """Single decoder call per step, guidance scale passed to the decoder."""
        return distill_step(
            self.forward_fm_decoder, text_condition, speech_condition, padding_mask, guidance_scale
        )


class ZipVoiceDialog(ZipVoice):
    """ZipVoice-Dialog: adds a speaker-turn embedding to the text-encoder output."""

    variant = "zipvoice_dialog"

    def __init__(
        self,
        config: ModelConfig | None = None,
        vocab_size: int = 26,
        pad_id: int = 0,
        spk_a_id: int = 360,
        spk_b_id: int = 361,
    ) -> None:
        super().__init__(config, vocab_size=vocab_size, pad_id=pad_id)
        self.spk_a_id = spk_a_id
        self.spk_b_id = spk_b_id
        self.spk_embed = nn.Embedding(2, self.feat_dim)

    def speaker_index(self, tokens_padded: Tensor) -> Tensor:
        """Per-token speaker (0/1) from the parity of ``[S1]``/``[S2]`` tags so far; -1 at pads."""
        turns = ((tokens_padded == self.spk_a_id) | (tokens_padded == self.spk_b_id)).long().cumsum(dim=1)
        return torch.where(tokens_padded == self.pad_id, -1, turns % 2)

    def embed_tokens(self, tokens_padded: Tensor, tokens_lens: Tensor) -> Tensor:
        """Text-encoder output plus the speaker embedding of each token's turn."""
        embed = super().embed_tokens(tokens_padded, tokens_lens)
        spk = self.speaker_index(tokens_padded)
        spk_vec = self.spk_embed.weight[spk.clamp(min=0)] * (spk >= 0).unsqueeze(-1).to(embed.dtype)
        return embed + spk_vec.to(embed.dtype)


class ZipVoiceDialogStereo(ZipVoiceDialog):
    """Stereo dialog model: two-stream decoder (2x features in/out; a mono stream is kept)."""

    variant = "zipvoice_dialog_stereo"

    def _build_decoder(self) -> TTSZipformer:
        f = self.feat_dim
        return TTSZipformerTwoStream(in_dim=(5 * f, 3 * f), out_dim=(2 * f, f), **self._decoder_kwargs())


ZipVoiceModel = ZipVoice
"""Common base type of all variants."""

VARIANTS: dict[str, type[ZipVoice]] = {
    cls.variant: cls for cls in (ZipVoice, ZipVoiceDistill, ZipVoiceDialog, ZipVoiceDialogStereo)
}
