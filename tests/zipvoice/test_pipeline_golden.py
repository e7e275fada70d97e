"""Full ``generate_sentence`` flow vs ``golden/e2e_zipvoice*.npz`` (README 3e).

Needs the acoustic model from ``api.zipvoice.model``. Tokenization is not under test
here: a stub tokenizer replays the golden token ids through ``tokens.txt`` so that a
text-frontend difference cannot mask (or fake) a pipeline result.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from api.zipvoice.pipeline import ZipVoicePipeline, add_punctuation, batchify_tokens, chunk_tokens_punctuation
from api.zipvoice.vocos import load_vocos
from tests.zipvoice import golden

MODEL_AVAILABLE = importlib.util.find_spec("api.zipvoice.model") is not None


class ReplayTokenizer:
    """Maps each known text to the golden ids, as token strings from ``tokens.txt``."""

    def __init__(self, tokens_file: Path, texts: dict[str, list[int]]) -> None:
        # the pipeline adds final punctuation before tokenizing: known with and without it
        texts = {**texts, **{add_punctuation(t): ids for t, ids in texts.items()}}
        table: dict[str, int] = {}
        for line in tokens_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                tok, idx = line.rsplit("\t", 1)
                table[tok] = int(idx)
        self.to_id = table
        inverse = {v: k for k, v in table.items()}
        self.texts = {t: [inverse[i] for i in ids] for t, ids in texts.items()}

    def texts_to_tokens(self, texts: list[str]) -> list[list[str]]:
        return [list(self.texts[t]) for t in texts]

    def tokens_to_token_ids(self, tokens_list: list[list[str]]) -> list[list[int]]:
        return [[self.to_id[t] for t in toks if t in self.to_id] for toks in tokens_list]


def test_text_helpers() -> None:
    assert add_punctuation("  hi there ") == "hi there."
    assert add_punctuation("ok?") == "ok?"
    chunks = chunk_tokens_punctuation(list("ab,cd. ef"), max_tokens=4)
    assert chunks == [["a", "b", ","], ["c", "d", ".", " "], ["e", "f"]]
    batches, order = batchify_tokens(
        [[1, 2, 3], [4], [5, 6]], max_duration=4.0, prompt_duration=1.0, token_duration=1.0
    )
    assert order == [1, 2, 0]
    assert batches == [[[4], [5, 6]], [[1, 2, 3]]]


@pytest.mark.skipif(not MODEL_AVAILABLE, reason="api.zipvoice.model is not importable yet")
@pytest.mark.parametrize("case", golden.e2e_case_names())
def test_generate_sentence(reference_dir: Path, case: str) -> None:
    from api.zipvoice.model import load_model

    spec = golden.e2e_case(reference_dir, case)
    g = golden.load_e2e(reference_dir, case)
    model_dir = reference_dir / "models" / spec["model"]
    text, prompt_text = spec["text"], spec["prompt_text"]
    tokenizer = ReplayTokenizer(
        model_dir / "tokens.txt",
        {text: g["sample_tokens"][0].tolist(), prompt_text: g["sample_prompt_tokens"][0].tolist()},
    )
    # the reference seeds the global RNG before its single randn draw
    assert int(g["num_x0"]) == 1
    assert torch.equal(
        torch.randn(tuple(g["x0"].shape), generator=torch.Generator().manual_seed(int(spec["seed"]))),
        torch.from_numpy(g["x0"]),
    )

    pipeline = ZipVoicePipeline(
        load_model(model_dir),
        tokenizer,
        load_vocos(reference_dir / golden.VOCODER_DIR),
        target_rms=float(spec["target_rms"]),
        feat_scale=float(spec["feat_scale"]),
        max_duration=float(spec["max_duration"]),
    )
    result = pipeline.generate(
        text,
        prompt_text,
        reference_dir / spec["prompt_wav"],
        num_step=int(spec["num_step"]),
        guidance_scale=float(spec["guidance_scale"]),
        speed=float(spec["speed"]),
        t_shift=float(spec["t_shift"]),
        seed=int(spec["seed"]),
        remove_long_sil=bool(spec["remove_long_sil"]),
    )
    assert result.num_chunks == 1
    assert result.sampling_rate == int(spec["sampling_rate"]) == int(g["sampling_rate"])
    assert result.prompt.rms == pytest.approx(float(g["prompt_rms"]), rel=1e-6)
    wav = result.wav.numpy()
    assert wav.dtype == np.float32
    assert wav.shape == g["wav"].shape
    diff = np.abs(wav - g["wav"])
    assert diff.max() <= 3.1e-5
    assert (diff > 0).mean() < 1e-3
