"""ZipVoice sentence generation (upstream ``generate_sentence``), model-agnostic.

Flow for one text: prepare the prompt (silence removal, +200 ms trailing silence, RMS
normalisation, log-mel x feat_scale); add final punctuation to both texts; tokenize;
split the text's tokens at punctuation into chunks that keep prompt + chunk around
25 s; group chunks into batches by estimated duration; ``model.sample`` per batch;
vocode each item; restore the volume; cross-fade the chunks in text order; trim edge
silence (and optionally long internal silences).

The model, tokenizer and vocoder are duck-typed (see the Protocols below). Subclasses
(``api.zipvoice.dialog.DialogPipeline``) override the hooks ``_check_texts``,
``_chunk_tokens``, ``_vocode`` and ``prepare_prompt`` and the class attributes
``chunk_target_s`` / ``supported_channels``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from api.zipvoice.audio_prep import (
    FEAT_SCALE,
    PROMPT_TRAIL_SIL_MS,
    SAMPLING_RATE,
    TARGET_RMS,
    PreparedPrompt,
    Vocoder,
    remove_silence_np,
)
from api.zipvoice.batching import SampleCancelled, current_cancel
from api.zipvoice.sampling import SamplerOptions

if TYPE_CHECKING:  # torch is imported where used: NumpyZipVoicePipeline runs without it
    import torch
    from torch import Tensor

    from api.zipvoice.batching import Batcher, SampleJob
    from api.zipvoice.runtime.ort_numpy import OnnxZipVoice

PUNCTUATION = frozenset({";", ":", ",", ".", "!", "?", "；", "：", "，", "。", "！", "？"})
CHUNK_TARGET_S = 25.0
CROSS_FADE_S = 0.1


class Tokenizer(Protocol):
    """Upstream tokenizer surface used by generation."""

    def texts_to_tokens(self, texts: list[str]) -> list[list[str]]: ...

    def tokens_to_token_ids(self, tokens_list: list[list[str]]) -> list[list[int]]: ...


class SpeechModel(Protocol):
    """``model.sample`` returning ``(pred_features, pred_lens, ...)``."""

    def sample(self, *args: Any, **kwargs: Any) -> Any: ...


def add_punctuation(text: str) -> str:
    """Strip and end the text with '.' unless it already ends in punctuation."""
    text = text.strip()
    if not text or text[-1] not in PUNCTUATION:
        text += "."
    return text


def pack_units(units: Sequence[list[str]], max_tokens: int) -> list[list[str]]:
    """Greedily join consecutive token units into chunks of at most ``max_tokens`` (a longer unit
    stays one chunk of its own)."""
    chunks: list[list[str]] = []
    chunk: list[str] = []
    for unit in units:
        if len(chunk) + len(unit) <= max_tokens:
            chunk.extend(unit)
        else:
            if chunk:
                chunks.append(chunk)
            chunk = list(unit)
    if chunk:
        chunks.append(chunk)
    return chunks


def chunk_tokens_punctuation(tokens: Sequence[str], max_tokens: int = 100) -> list[list[str]]:
    """Cut after each punctuation token (leading punctuation/spaces stick to the previous
    sentence), then greedily merge sentences into chunks of at most ``max_tokens``."""
    sentences: list[list[str]] = []
    current: list[str] = []
    for tok in tokens:
        if not current and sentences and (tok in PUNCTUATION or tok == " "):
            sentences[-1].append(tok)
            continue
        current.append(tok)
        if tok in PUNCTUATION:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)

    return pack_units(sentences, max_tokens)


def batchify_tokens(
    tokens_list: Sequence[Sequence[int]],
    max_duration: float,
    prompt_duration: float,
    token_duration: float,
) -> tuple[list[list[list[int]]], list[int]]:
    """Sort sequences by length and pack them into batches under ``max_duration`` seconds.

    Returns the batches and, for each sorted position, the original index.
    """
    order = sorted(range(len(tokens_list)), key=lambda i: len(tokens_list[i]))
    batches: list[list[list[int]]] = []
    batch: list[list[int]] = []
    batch_tokens = 0
    for i in order:
        toks = list(tokens_list[i])
        cost = (batch_tokens + len(toks)) * token_duration + len(batch) * prompt_duration
        if cost <= max_duration:
            batch.append(toks)
            batch_tokens += len(toks)
        else:
            if batch:
                batches.append(batch)
            batch = [toks]
            batch_tokens = len(toks)
    if batch:
        batches.append(batch)
    return batches, order


@dataclass
class GenerationResult:
    """Output of :meth:`ZipVoicePipeline.generate`."""

    wav: Tensor  # (C, T) float32 at 24 kHz
    sampling_rate: int
    num_chunks: int
    prompt: PreparedPrompt


class ZipVoicePipeline:
    """Text + voice prompt -> 24 kHz audio, as upstream ``generate_sentence``."""

    #: seconds that prompt + one generated chunk should stay around
    chunk_target_s: float = CHUNK_TARGET_S
    #: feature channel counts this class can generate
    supported_channels: tuple[int, ...] = (1,)

    def __init__(
        self,
        model: SpeechModel,
        tokenizer: Tokenizer,
        vocoder: Vocoder,
        *,
        num_channels: int = 1,
        device: str | torch.device = "cpu",
        target_rms: float = TARGET_RMS,
        feat_scale: float = FEAT_SCALE,
        max_duration: float = 100.0,
    ) -> None:
        import torch

        from api.zipvoice.features import VocosFbank

        if num_channels not in self.supported_channels:
            raise ValueError(
                f"{type(self).__name__} supports num_channels in {self.supported_channels}, got "
                f"{num_channels} (stereo dialog models: api.zipvoice.dialog.DialogPipeline)"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.vocoder = vocoder
        self.num_channels = num_channels
        self.device = torch.device(device)
        self.target_rms = target_rms
        self.feat_scale = feat_scale
        self.max_duration = max_duration
        self.extractor = VocosFbank(num_channels=num_channels)
        self._sample_params = set(inspect.signature(model.sample).parameters)
        #: cross-request batching of the sampler calls (:meth:`enable_batching`); ``None``: off
        self.batcher: Batcher[SampleJob, tuple[Tensor, Tensor]] | None = None

    def enable_batching(self, window_s: float, max_size: int, max_queue: int, workers: int = 1) -> bool:
        """Run the sampler calls of concurrent :meth:`generate` calls as padded batches
        (:mod:`api.zipvoice.batching`). Only the PyTorch model takes padding masks and an
        injected ``x0``: with a graph runtime (ONNX/TensorRT, batch of one, no mask input) this
        returns ``False`` and calls stay sequential."""
        from api.zipvoice.batching import sample_batcher
        from api.zipvoice.model.zipvoice import ZipVoice

        if max_size <= 1 or not isinstance(self.model, ZipVoice):
            return False
        self.batcher = sample_batcher(
            self.model, window_s=window_s, max_size=max_size, max_queue=max_queue, workers=workers
        )
        return True

    def prepare_prompt(
        self, wav: Tensor | str | Path | bytes, sampling_rate: int | None = None
    ) -> PreparedPrompt:
        """Decode (if needed) and prepare a prompt; the result can be reused across texts."""
        import torch

        from api.zipvoice.audio_prep import prepare_prompt, read_audio

        if isinstance(wav, torch.Tensor):
            if sampling_rate is None:
                raise ValueError("sampling_rate is required for a tensor prompt")
            audio, rate = wav, sampling_rate
        else:
            audio, rate = read_audio(wav)
        return prepare_prompt(
            audio,
            rate,
            num_channels=self.num_channels,
            target_rms=self.target_rms,
            feat_scale=self.feat_scale,
            extractor=self.extractor,
        )

    def _check_texts(self, text: str, prompt_text: str) -> None:
        """Validate the inputs before any work (hook; plain TTS accepts any text)."""

    def _chunk_tokens(self, tokens: list[str], max_tokens: int) -> list[list[str]]:
        """Split the text's tokens into generation chunks (hook)."""
        return chunk_tokens_punctuation(tokens, max_tokens=max_tokens)

    def _vocode(self, pred: Tensor, pred_lens: Tensor, prompt_rms: float) -> list[Tensor]:
        """Model output batch -> list of ``(C, samples)`` waves, volume restored (hook)."""
        from api.zipvoice.audio_prep import synthesize_features_to_wav

        return synthesize_features_to_wav(
            self.vocoder, pred, pred_lens, prompt_rms, self.target_rms, self.feat_scale
        )

    def _sample(self, kwargs: dict[str, Any], generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        if self.batcher is not None:
            from api.zipvoice.batching import make_job

            job = make_job(**kwargs, generator=generator)
            return self.batcher.submit(job, current_cancel())
        if generator is not None and "generator" in self._sample_params:
            kwargs["generator"] = generator
        out = self.model.sample(**kwargs)
        return out[0], out[1]

    def generate(
        self,
        text: str,
        prompt_text: str,
        prompt: PreparedPrompt | Tensor | str | Path | bytes,
        prompt_sampling_rate: int | None = None,
        *,
        num_step: int = 16,
        guidance_scale: float = 1.0,
        speed: float = 1.0,
        t_shift: float = 0.5,
        seed: int | None = None,
        remove_long_sil: bool = False,
    ) -> GenerationResult:
        """Synthesize ``text`` in the prompt's voice; ``seed`` fixes the initial noise.

        With batching on, the sampler calls may share a padded batch with other threads' calls
        (:mod:`api.zipvoice.batching`); a :func:`~api.zipvoice.batching.cancel_scope` around the
        call lets a cancelled request leave its batch (``SampleCancelled``).
        """
        session = self.batcher.session() if self.batcher is not None else contextlib.nullcontext()
        with session:
            return self._generate(
                text,
                prompt_text,
                prompt,
                prompt_sampling_rate,
                num_step=num_step,
                guidance_scale=guidance_scale,
                speed=speed,
                t_shift=t_shift,
                seed=seed,
                remove_long_sil=remove_long_sil,
            )

    def _generate(
        self,
        text: str,
        prompt_text: str,
        prompt: PreparedPrompt | Tensor | str | Path | bytes,
        prompt_sampling_rate: int | None,
        *,
        num_step: int,
        guidance_scale: float,
        speed: float,
        t_shift: float,
        seed: int | None,
        remove_long_sil: bool,
    ) -> GenerationResult:
        import torch

        from api.zipvoice.audio_prep import cross_fade_concat, finalize_wav

        self._check_texts(text, prompt_text)
        if not isinstance(prompt, PreparedPrompt):
            prompt = self.prepare_prompt(prompt, prompt_sampling_rate)
        prompt_features = prompt.features.to(self.device)
        prompt_duration = prompt.duration

        text = add_punctuation(text)
        prompt_text = add_punctuation(prompt_text)
        tokens_str = self.tokenizer.texts_to_tokens([text])[0]
        prompt_tokens_str = self.tokenizer.texts_to_tokens([prompt_text])[0]
        if not prompt_tokens_str:
            raise ValueError("the prompt transcript produced no tokens")

        token_duration = prompt_duration / (len(prompt_tokens_str) * speed)
        max_tokens = int((self.chunk_target_s - prompt_duration) / token_duration)
        chunks = self._chunk_tokens(tokens_str, max_tokens)
        chunk_ids = self.tokenizer.tokens_to_token_ids(chunks)
        prompt_ids = self.tokenizer.tokens_to_token_ids([prompt_tokens_str])
        batches, order = batchify_tokens(chunk_ids, self.max_duration, prompt_duration, token_duration)

        generator: torch.Generator | None = None
        if seed is not None:
            if "generator" in self._sample_params:
                generator = torch.Generator(device=self.device).manual_seed(seed)
            else:
                torch.manual_seed(seed)

        options = SamplerOptions(
            speed=speed, t_shift=t_shift, num_step=num_step, guidance_scale=guidance_scale
        )
        wavs: list[Tensor] = []
        for batch in batches:
            n = len(batch)
            pred, pred_lens = self._sample(
                {
                    "tokens": batch,
                    "prompt_tokens": prompt_ids * n,
                    "prompt_features": prompt_features.repeat(n, 1, 1),
                    "prompt_features_lens": torch.full((n,), prompt_features.shape[1], device=self.device),
                    "options": options,
                },
                generator,
            )
            wavs.extend(w.cpu() for w in self._vocode(pred, pred_lens, prompt.rms))

        ordered = [w for _, w in sorted(zip(order, wavs, strict=True), key=lambda p: p[0])]
        wav = cross_fade_concat(ordered, fade_s=CROSS_FADE_S, sampling_rate=SAMPLING_RATE)
        wav = finalize_wav(wav, remove_long_sil=remove_long_sil)
        return GenerationResult(wav=wav, sampling_rate=SAMPLING_RATE, num_chunks=len(chunks), prompt=prompt)


# ---------------------------------------------------------------------------
# torch-free pipeline (ONNX Runtime + numpy features/vocoder)
# ---------------------------------------------------------------------------


class FeatureExtractor(Protocol):
    """``extract(wav (C, T) float32 ndarray, sampling_rate) -> (frames, C_feat * 100)`` log-mel."""

    def extract(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray: ...


class ArrayVocoder(Protocol):
    """``decode(mel (B, 100, T) float32 ndarray) -> wav (B, samples)`` (Vocos)."""

    def decode(self, features: np.ndarray) -> np.ndarray: ...


@dataclass
class ArrayPrompt:
    """A prompt prepared without torch (the numpy twin of :class:`PreparedPrompt`)."""

    wav: np.ndarray  # (C, T) 24 kHz after silence removal and RMS normalisation
    rms: float  # RMS before normalisation
    features: np.ndarray  # (frames, F), already multiplied by feat_scale

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def duration(self) -> float:
        return self.wav.shape[-1] / SAMPLING_RATE


@dataclass
class ArrayGenerationResult:
    """Output of :meth:`NumpyZipVoicePipeline.generate`."""

    wav: np.ndarray  # (C, T) float32 at 24 kHz
    sampling_rate: int
    num_chunks: int
    prompt: ArrayPrompt


def cross_fade_concat_np(
    chunks: Sequence[np.ndarray], fade_s: float = CROSS_FADE_S, sampling_rate: int = SAMPLING_RATE
) -> np.ndarray:
    """Join ``(C, T)`` chunks with a linear cross-fade (as :func:`audio_prep.cross_fade_concat`)."""
    if not chunks:
        return np.zeros((1, 0), dtype=np.float32)
    out = chunks[0]
    fade_len = int(fade_s * sampling_rate)
    for nxt in chunks[1:]:
        k = min(fade_len, out.shape[-1], nxt.shape[-1])
        if k <= 0:
            out = np.concatenate([out, nxt], axis=-1)
            continue
        ramp = np.linspace(1, 0, k, dtype=np.float32)[None]
        mixed = out[..., -k:] * ramp + nxt[..., :k] * (1 - ramp)
        out = np.concatenate([out[..., :-k], mixed, nxt[..., k:]], axis=-1)
    return out.astype(np.float32, copy=False)


class NumpyZipVoicePipeline:
    """Upstream ``generate_sentence`` on ONNX Runtime with numpy features and vocoder: no torch.

    Mono ``zipvoice`` / ``zipvoice_distill`` (the variants with official ONNX files). Same steps as
    :class:`ZipVoicePipeline`; the graphs are batch-of-one, so chunks are generated one by one in
    text order, each with noise from one ``np.random.default_rng(seed)`` per call.

    No cross-request batching here: the official graphs take no padding mask, so a padded batch
    would change every shorter item's output, and items of equal frame count are too rare to pay.
    With ``BATCH_MAX_SIZE`` > 1 this pipeline stays sequential (batching on is batching off). A
    cancelled request (:func:`~api.zipvoice.batching.cancel_scope`) stops between chunks.
    """

    chunk_target_s: float = CHUNK_TARGET_S

    def __init__(
        self,
        model: OnnxZipVoice,
        tokenizer: Tokenizer,
        vocoder: ArrayVocoder,
        extractor: FeatureExtractor,
        *,
        target_rms: float = TARGET_RMS,
        feat_scale: float = FEAT_SCALE,
        chunk_target_s: float = CHUNK_TARGET_S,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.vocoder = vocoder
        self.extractor = extractor
        #: prompt + chunk seconds per decoder pass (memory grows with its square; the engine bounds it)
        self.chunk_target_s = chunk_target_s
        self.num_channels = 1
        self.target_rms = target_rms
        self.feat_scale = feat_scale

    def prepare_prompt(self, wav: np.ndarray, sampling_rate: int) -> ArrayPrompt:
        """``(C, T)`` or ``(T,)`` float audio -> prompt (resample, silences, RMS, features)."""
        import soxr

        audio = np.asarray(wav, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim != 2 or audio.shape[0] < 1:
            raise ValueError(f"expected (C, T) audio, got shape {audio.shape}")
        if audio.shape[0] > 2:
            audio = audio.mean(axis=0, keepdims=True)
        if sampling_rate != SAMPLING_RATE:
            out = soxr.resample(audio.T, sampling_rate, SAMPLING_RATE, quality="VHQ")
            audio = np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, audio.shape[0]).T)
        audio = remove_silence_np(audio, SAMPLING_RATE, only_edge=False, trail_sil_ms=PROMPT_TRAIL_SIL_MS)
        if audio.shape[-1] == 0:
            raise ValueError("the prompt audio is silent")
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float32))))
        if rms < self.target_rms:
            audio = (audio * np.float32(self.target_rms / max(rms, 1e-12))).astype(np.float32)
        features = np.asarray(self.extractor.extract(audio, SAMPLING_RATE), dtype=np.float32)
        return ArrayPrompt(wav=audio, rms=rms, features=features * np.float32(self.feat_scale))

    def _vocode(self, pred: np.ndarray, prompt_rms: float) -> np.ndarray:
        """``(frames, 100)`` features -> ``(1, samples)`` clamped, volume restored."""
        mel = (pred.T[None] / np.float32(self.feat_scale)).astype(np.float32)
        wav = np.asarray(self.vocoder.decode(mel), dtype=np.float32)
        if wav.ndim == 3:
            wav = wav[:, 0]
        wav = np.clip(wav, -1.0, 1.0)
        if prompt_rms < self.target_rms:
            wav = wav * np.float32(prompt_rms / self.target_rms)
        return wav.astype(np.float32, copy=False)

    def generate(
        self,
        text: str,
        prompt_text: str,
        prompt: ArrayPrompt,
        *,
        num_step: int = 16,
        guidance_scale: float = 1.0,
        speed: float = 1.0,
        t_shift: float = 0.5,
        seed: int | None = None,
        remove_long_sil: bool = False,
    ) -> ArrayGenerationResult:
        """Synthesize ``text`` in the prompt's voice; ``seed`` fixes the initial noise."""
        text = add_punctuation(text)
        prompt_text = add_punctuation(prompt_text)
        tokens_str = self.tokenizer.texts_to_tokens([text])[0]
        prompt_tokens_str = self.tokenizer.texts_to_tokens([prompt_text])[0]
        if not prompt_tokens_str:
            raise ValueError("the prompt transcript produced no tokens")
        if speed <= 0:
            raise ValueError("speed must be positive")
        token_duration = prompt.duration / (len(prompt_tokens_str) * speed)
        max_tokens = int((self.chunk_target_s - prompt.duration) / token_duration)
        chunks = [c for c in chunk_tokens_punctuation(tokens_str, max_tokens=max_tokens) if c]
        chunk_ids = self.tokenizer.tokens_to_token_ids(chunks)
        (prompt_ids,) = self.tokenizer.tokens_to_token_ids([prompt_tokens_str])
        if not any(chunk_ids):
            raise ValueError("the text produced no tokens")
        rng = np.random.default_rng(seed)
        options = SamplerOptions(
            speed=speed, t_shift=t_shift, num_step=num_step, guidance_scale=guidance_scale
        )
        wavs = []
        cancel = current_cancel()
        for ids in chunk_ids:
            if not ids:
                continue
            if cancel is not None and cancel.is_set():
                raise SampleCancelled("the request was cancelled")
            pred = self.model.sample_chunk(
                ids,
                prompt_ids,
                prompt.features,
                options,
                rng=rng,
            )
            wavs.append(self._vocode(pred, prompt.rms))
        wav = cross_fade_concat_np(wavs)
        wav = remove_silence_np(wav, SAMPLING_RATE, only_edge=not remove_long_sil, trail_sil_ms=0)
        return ArrayGenerationResult(
            wav=wav, sampling_rate=SAMPLING_RATE, num_chunks=len(chunks), prompt=prompt
        )
