"""Inference-only PyTorch implementation of the ZipVoice TTS networks and sampler."""

from api.zipvoice.model.checkpoint import load_model
from api.zipvoice.model.sampler import euler_sample, get_timesteps
from api.zipvoice.model.zipvoice import (
    ModelConfig,
    ZipVoice,
    ZipVoiceDialog,
    ZipVoiceDialogStereo,
    ZipVoiceDistill,
    ZipVoiceModel,
)

__all__ = [
    "ModelConfig",
    "ZipVoice",
    "ZipVoiceDialog",
    "ZipVoiceDialogStereo",
    "ZipVoiceDistill",
    "ZipVoiceModel",
    "euler_sample",
    "get_timesteps",
    "load_model",
]
