"""ZipVoice backends (zero-shot cloning): ``zipvoice``, ``zipvoice_distill``, ``zipvoice_dialog``,
``zipvoice_dialog_stereo``, running our own PyTorch implementation (``api.zipvoice``).

The engine owns the loaded model, tokenizer and vocoder of one variant, and a bounded cache of
prepared prompts (cleaned audio, features, RMS) keyed by the reference clip's digest, so reusing a
voice skips that work.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from api.engines.base import AudioChunk, Availability, ReferenceVoice, SynthesisOptions, Voice
from api.engines.registry import register_engine
from api.errors import InvalidRequestError, ServiceUnavailableError
from api.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantDefaults:
    num_steps: int
    guidance_scale: float
    t_shift: float
    channels: int
    tokenizer: str
    dialog: bool


# Upstream defaults (infer_zipvoice.py / infer_zipvoice_dialog.py).
VARIANTS: dict[str, VariantDefaults] = {
    "zipvoice": VariantDefaults(16, 1.0, 0.5, 1, "emilia", False),
    "zipvoice_distill": VariantDefaults(8, 3.0, 0.5, 1, "emilia", False),
    "zipvoice_dialog": VariantDefaults(16, 1.5, 0.5, 1, "dialog", True),
    "zipvoice_dialog_stereo": VariantDefaults(16, 1.5, 0.5, 2, "dialog", True),
}
DESCRIPTIONS = {
    "zipvoice": "ZipVoice zero-shot voice cloning (flow matching, 16 steps)",
    "zipvoice_distill": "ZipVoice-Distill: faster zero-shot voice cloning (8 steps)",
    "zipvoice_dialog": "ZipVoice-Dialog: two-speaker dialog ([S1]/[S2] turns), mono",
    "zipvoice_dialog_stereo": "ZipVoice-Dialog-Stereo: two-speaker dialog, one speaker per channel",
}


def torch_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


class PromptCache:
    """A small thread-safe LRU of prepared prompts."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: str, value: Any) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class ZipVoiceEngine:
    voice_kind: Literal["preset", "clone"] = "clone"
    sample_rate = 24000

    def __init__(self, settings: Settings, variant: str) -> None:
        self.name = variant
        self.variant = variant
        self.defaults = VARIANTS[variant]
        self.channels = self.defaults.channels
        # dialog text must stay whole (turn tags); the pipeline chunks it by turns
        self.max_chunk_chars = 300
        self.whole_text = self.defaults.dialog
        self._settings = settings
        self._lock = threading.Lock()
        self._pipeline: Any = None
        self.prompts = PromptCache(settings.prompt_cache_size)

    # -- lifecycle ---------------------------------------------------------------------------
    def availability(self) -> Availability:
        for module, extra in (("torch", "torch"), ("piper_phonemize", "zipvoice"), ("jieba", "zipvoice")):
            if importlib.util.find_spec(module) is None:
                return Availability(False, f"{module} is not installed (install the '{extra}' extra)")
        from api.zipvoice.weights import weights_state

        ok, reason = weights_state(self._settings, self.variant)
        return Availability(ok, None if ok else reason)

    def load(self) -> None:
        if self._pipeline is not None:
            return
        with self._lock:
            if self._pipeline is not None:
                return
            avail = self.availability()
            if not avail.ok:
                raise ServiceUnavailableError(f"Backend '{self.variant}' is unavailable: {avail.reason}.")
            import torch

            from api.zipvoice.model.checkpoint import load_model
            from api.zipvoice.pipeline import ZipVoicePipeline
            from api.zipvoice.tokenizer import get_tokenizer
            from api.zipvoice.vocos import load_vocos
            from api.zipvoice.weights import WeightsMissing, fetch_weights

            try:
                model_dir, vocos_dir = fetch_weights(self._settings, self.variant)
            except WeightsMissing as exc:
                raise ServiceUnavailableError(f"Backend '{self.variant}' is unavailable: {exc}.") from exc
            if self._settings.num_threads:
                torch.set_num_threads(self._settings.num_threads)
            device = torch_device(self._settings.device)
            model = load_model(model_dir, device=device)
            tokenizer = get_tokenizer(self.defaults.tokenizer, model_dir / "tokens.txt")
            vocoder = load_vocos(vocos_dir, device=device)
            if self.defaults.dialog:
                from api.zipvoice.dialog import DialogPipeline

                self._pipeline = DialogPipeline(
                    model, tokenizer, vocoder, num_channels=self.channels, device=device
                )
            else:
                self._pipeline = ZipVoicePipeline(model, tokenizer, vocoder, device=device)
            log.info("%s loaded on %s from %s", self.variant, device, model_dir)

    def preset_voices(self) -> list[str]:
        return []

    # -- synthesis ---------------------------------------------------------------------------
    def prepared_prompt(self, voice: ReferenceVoice) -> Any:
        """Prepared prompt for a clip, cached by its digest."""
        import torch

        key = f"{voice.digest}:{self.channels}"
        prompt = self.prompts.get(key)
        if prompt is None:
            prompt = self._pipeline.prepare_prompt(
                torch.from_numpy(np.ascontiguousarray(voice.samples)), voice.sample_rate
            )
            self.prompts.put(key, prompt)
        return prompt

    def synthesize(self, chunks: list[str], voice: Voice, options: SynthesisOptions) -> Iterator[AudioChunk]:
        if not isinstance(voice, ReferenceVoice):
            raise InvalidRequestError(
                f"Model '{self.variant}' clones a voice: give a registered voice, file+PATH, url+URL or "
                "base64+DATA reference clip.",
                param="voice",
            )
        if not voice.transcript:
            raise InvalidRequestError(
                "The reference clip needs a transcript ('prompt_text').", param="prompt_text"
            )
        if self.defaults.dialog:
            from api.zipvoice.dialog import validate_dialog_text

            try:
                validate_dialog_text(" ".join(chunks))
            except ValueError as exc:
                raise InvalidRequestError(
                    f"Model '{self.variant}' speaks dialogs: mark turns with [S1] and [S2] ({exc}).",
                    param="input",
                ) from exc
            try:
                validate_dialog_text(voice.transcript, prompt=True)
            except ValueError as exc:
                raise InvalidRequestError(
                    f"The dialog prompt transcript needs [S1] and [S2] turns ({exc}).", param="prompt_text"
                ) from exc
        self.load()
        prompt = self.prepared_prompt(voice)
        d = self.defaults
        for i, text in enumerate(chunks):
            if not text.strip():
                continue
            seed = None if options.seed is None else options.seed + i
            try:
                result = self._pipeline.generate(
                    text,
                    voice.transcript,
                    prompt,
                    num_step=options.num_steps or d.num_steps,
                    guidance_scale=d.guidance_scale
                    if options.guidance_scale is None
                    else options.guidance_scale,
                    speed=options.speed,
                    t_shift=options.t_shift or d.t_shift,
                    seed=seed,
                )
            except ValueError as exc:  # e.g. text that yields no tokens
                raise InvalidRequestError(f"Cannot synthesize this input: {exc}", param="input") from exc
            wav = result.wav.detach().cpu().numpy().astype(np.float32, copy=False)
            if wav.ndim == 1:
                wav = wav[None, :]
            yield AudioChunk(wav, int(result.sampling_rate))


def _factory(variant: str) -> Any:
    def build(settings: Settings) -> ZipVoiceEngine:
        return ZipVoiceEngine(settings, variant)

    return build


for _variant in VARIANTS:
    register_engine(_variant, _factory(_variant), DESCRIPTIONS[_variant])
