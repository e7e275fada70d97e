"""Export-friendly wrappers with the inputs/outputs of upstream's ONNX export (batch of one).

* :class:`TextConditionModel`: ``(tokens (1,S), prompt_tokens (1,P), prompt_features_len (),
  speed ()) -> text_condition (1, T, feat_dim)``.
* :class:`FlowMatchingStepModel`: ``(t (), x, text_condition, speech_condition,
  guidance_scale ()) -> v``; classifier-free guidance is inside for non-distilled models.

Both are traceable (no data-dependent Python control flow).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from api.zipvoice.model.zipvoice import ZipVoice, ZipVoiceDistill


class TextConditionModel(nn.Module):
    """Text encoder + uniform duration expansion, as in upstream's ``OnnxTextModel``.

    Note: like upstream's ONNX graph, the total frame count is
    ``ceil(prompt_features_len / P * (P + S) / speed)``.
    """

    def __init__(self, model: ZipVoice) -> None:
        super().__init__()
        self.model = model
        self.pad_id = model.pad_id

    def forward(
        self, tokens: Tensor, prompt_tokens: Tensor, prompt_features_len: Tensor, speed: Tensor
    ) -> Tensor:
        cat_tokens = torch.cat([prompt_tokens, tokens], dim=1)
        cat_tokens = nn.functional.pad(cat_tokens, (0, 1), value=self.pad_id)
        num_tokens = cat_tokens.shape[1] - 1
        lens = torch.full((cat_tokens.shape[0],), num_tokens, dtype=torch.int64, device=cat_tokens.device)
        embed = self.model.embed_tokens(cat_tokens, lens)
        features_len = torch.ceil(prompt_features_len / prompt_tokens.shape[1] * num_tokens / speed).to(
            torch.int64
        )
        token_dur = torch.div(features_len, num_tokens, rounding_mode="floor")
        frame = torch.arange(features_len.reshape(()), device=embed.device)  # type: ignore[call-overload]
        index = torch.minimum(frame // token_dur.clamp(min=1), torch.full_like(frame, num_tokens))
        index = torch.where(token_dur > 0, index, torch.full_like(frame, num_tokens))
        return embed[:, index]


class FlowMatchingStepModel(nn.Module):
    """One guided decoder step, as in upstream's ``OnnxFlowMatchingModel``."""

    def __init__(self, model: ZipVoice) -> None:
        super().__init__()
        self.model = model
        self.distill = isinstance(model, ZipVoiceDistill)
        self.feat_dim = model.feat_dim

    def forward(
        self, t: Tensor, x: Tensor, text_condition: Tensor, speech_condition: Tensor, guidance_scale: Tensor
    ) -> Tensor:
        if self.distill:
            return self.model.forward_fm_decoder(
                t, x, text_condition, speech_condition, guidance_scale=guidance_scale
            )
        late = t > 0.5
        x2 = torch.cat([x, x], dim=0)
        text2 = torch.cat([torch.zeros_like(text_condition), text_condition], dim=0)
        uncond_speech = torch.where(late, torch.zeros_like(speech_condition), speech_condition)
        speech2 = torch.cat([uncond_speech, speech_condition], dim=0)
        scale = torch.where(late, guidance_scale, guidance_scale * 2.0)
        uncond, cond = self.model.forward_fm_decoder(t, x2, text2, speech2).chunk(2, dim=0)
        return (1 + scale) * cond - scale * uncond
