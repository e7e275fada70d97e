"""The torch-free pipeline's per-pass bound (``chunk_target_s``, set by the engine from
``ZIPVOICE_ONNX_CHUNK_SECONDS``): a long text becomes several decoder passes of at most the bound's
frames, cut at punctuation, so the decoder's memory does not grow with the text.

A fake model records each pass (its token count and the total frames the real sampler would give
it, :func:`predicted_frames`); the vocoder returns ``(frames - 1) * 256`` samples of a tone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from api.zipvoice.audio_prep import SAMPLING_RATE
from api.zipvoice.pipeline import CHUNK_TARGET_S, CROSS_FADE_S, ArrayPrompt, NumpyZipVoicePipeline
from api.zipvoice.runtime.ort_numpy import predicted_frames
from api.zipvoice.sampling import SamplerOptions
from api.zipvoice.tokenizer import SimpleTokenizer, TokenTable

FRAME_RATE = SAMPLING_RATE / 256  # feature frames per second
FEAT = 100


class FakeModel:
    feat_dim = FEAT

    def __init__(self) -> None:
        self.passes: list[tuple[int, int]] = []  # (tokens, total frames)

    def sample_chunk(
        self,
        tokens: Sequence[int],
        prompt_tokens: Sequence[int],
        prompt_features: np.ndarray,
        options: SamplerOptions,
        *,
        rng: np.random.Generator,
    ) -> np.ndarray:
        plen = prompt_features.shape[0]
        total = predicted_frames(plen, len(prompt_tokens), len(tokens), options.speed)
        self.passes.append((len(tokens), total))
        return np.full((total - plen, FEAT), -1.0, dtype=np.float32)


class ToneVocoder:
    def decode(self, features: np.ndarray) -> np.ndarray:
        frames = features.shape[-1]
        t = np.arange((frames - 1) * 256, dtype=np.float32) / SAMPLING_RATE
        return (0.3 * np.sin(2 * np.pi * 220 * t, dtype=np.float32))[None]


class NoExtractor:
    def extract(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        raise AssertionError("the prompt is built by hand here")


def _tokenizer(text: str) -> SimpleTokenizer:
    chars = sorted(set(text) | set("abcdefghijklmnopqrstuvwxyz.,_ "))
    return SimpleTokenizer(TokenTable.from_mapping({c: i for i, c in enumerate(chars)}))


PROMPT_TEXT = "the prompt, spoken clearly."  # 27 tokens
PROMPT_SECONDS = 2.0
CLAUSE = "a clause of a few words, "  # 25 characters (tokens)
LONG_TEXT = (CLAUSE * 40).strip().rstrip(",") + "."  # ~1000 tokens: about a minute of speech


def _pipeline(chunk_target_s: float | None) -> tuple[NumpyZipVoicePipeline, FakeModel, ArrayPrompt]:
    model = FakeModel()
    kwargs: dict[str, Any] = {} if chunk_target_s is None else {"chunk_target_s": chunk_target_s}
    pipe = NumpyZipVoicePipeline(
        model,  # type: ignore[arg-type]
        _tokenizer(LONG_TEXT + PROMPT_TEXT),
        ToneVocoder(),
        NoExtractor(),
        **kwargs,
    )
    frames = int(PROMPT_SECONDS * FRAME_RATE)
    prompt = ArrayPrompt(
        wav=np.zeros((1, int(PROMPT_SECONDS * SAMPLING_RATE)), dtype=np.float32),
        rms=0.1,
        features=np.zeros((frames, FEAT), dtype=np.float32),
    )
    return pipe, model, prompt


@pytest.mark.parametrize("target", [5.0, 8.0, 12.0])
def test_a_long_text_gives_passes_within_the_bound(target: float) -> None:
    pipe, model, prompt = _pipeline(target)
    result = pipe.generate(LONG_TEXT, PROMPT_TEXT, prompt, num_step=1)
    bound_frames = target * FRAME_RATE
    assert len(model.passes) > 1
    assert result.num_chunks == len(model.passes)
    assert all(total <= bound_frames + 1 for _, total in model.passes), (target, model.passes)
    # every token is spoken once: the passes cover the text
    assert sum(n for n, _ in model.passes) == len(LONG_TEXT)
    # the audio is the passes' audio cross-faded (within a frame: edge trimming rounds)
    samples = sum((total - prompt.num_frames - 1) * 256 for _, total in model.passes)
    fades = (len(model.passes) - 1) * int(CROSS_FADE_S * SAMPLING_RATE)
    assert abs(result.wav.shape[-1] - (samples - fades)) <= 256


def test_passes_do_not_grow_with_the_text() -> None:
    lengths = []
    for clauses in (10, 40):
        pipe, model, prompt = _pipeline(6.0)
        pipe.generate((CLAUSE * clauses).strip().rstrip(",") + ".", PROMPT_TEXT, prompt, num_step=1)
        lengths.append(max(total for _, total in model.passes))
    assert lengths[1] <= lengths[0] + 1


def test_upstream_target_is_the_default_and_gives_one_long_pass() -> None:
    pipe, model, prompt = _pipeline(None)
    assert pipe.chunk_target_s == CHUNK_TARGET_S
    pipe.generate((CLAUSE * 12).strip().rstrip(",") + ".", PROMPT_TEXT, prompt, num_step=1)
    assert len(model.passes) == 1 and model.passes[0][1] > 12 * FRAME_RATE
