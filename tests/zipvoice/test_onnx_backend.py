"""ONNX export + ONNX Runtime backend vs the PyTorch model (tiny reference checkpoints).

Tolerances (float32 everywhere):
* fp32 graphs: text condition and one decoder step within 1e-4 absolute (observed ~3e-6);
  the full 4-step sample with the same ``x0`` within 1e-3 absolute (observed ~4e-6);
* int8 graphs (dynamic MatMul quantisation): full sample within 10 % relative L2 error
  (observed 1-3 % on the tiny models) -- a loose bound, int8 is a different model numerically;
* end-to-end pipeline (vocoded wav, fp32): within 1e-3 absolute of the PyTorch pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from api.zipvoice.model.checkpoint import load_model
from api.zipvoice.model.export import TextConditionModel
from api.zipvoice.onnx_export import (
    FM_INPUTS,
    TEXT_INPUTS,
    export_onnx,
    onnx_files,
)
from api.zipvoice.runtime.onnx_backend import (
    GraphZipVoice,
    graph_speed,
    load_onnx_model,
    predicted_frames,
)
from api.zipvoice.sampling import SamplerOptions
from tests.zipvoice import golden

# one checkpoint per architecture: plain, distilled (guidance input), two-stream stereo dialog
VARIANTS = ["zipvoice", "zipvoice_distill", "zipvoice_dialog_stereo"]


def _guidance(reference_dir: Path, variant: str) -> float:
    """The guidance scale the set's cases use with this checkpoint."""
    data = golden.cases(reference_dir)
    for kind in ("sample_cases", "e2e_cases"):
        for spec in data.get(kind, {}).values():
            if spec["model"] == variant:
                return float(spec["guidance_scale"])
    pytest.skip(f"no case of the fixture set uses models/{variant}")


@pytest.fixture(scope="module")
def exported(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for variant in VARIANTS:
        target = tmp_path_factory.mktemp(f"onnx-{variant}")
        export_onnx(reference_dir / "models" / variant, target, progress=lambda _: None)
        out[variant] = target
    return out


def _inputs(
    model: GraphZipVoice, seed: int = 0
) -> tuple[list[list[int]], list[list[int]], torch.Tensor, int]:
    gen = torch.Generator().manual_seed(seed)
    prompt_len = 57
    prompt = torch.randn(1, prompt_len, model.feat_dim, generator=gen)
    tokens = torch.randint(1, 300, (1, 35), generator=gen).tolist()
    prompt_tokens = torch.randint(1, 300, (1, 17), generator=gen).tolist()
    return tokens, prompt_tokens, prompt, prompt_len


def test_upstream_io_names_and_dynamic_axes(exported: dict[str, Path]) -> None:
    import onnx

    for variant, directory in exported.items():
        for precision in ("fp32", "int8"):
            files = onnx_files(directory, precision)
            assert files is not None, (variant, precision)
            text, fm = (onnx.load(str(p), load_external_data=False) for p in files)
            assert [i.name for i in text.graph.input] == list(TEXT_INPUTS)
            assert [o.name for o in text.graph.output] == ["text_condition"]
            assert [i.name for i in fm.graph.input] == list(FM_INPUTS)
            assert [o.name for o in fm.graph.output] == ["v"]
            x = fm.graph.input[1].type.tensor_type.shape.dim
            assert (x[0].dim_param, x[1].dim_param) == ("N", "T")
            # the weight-reduction fold left no ReduceSum over weights (no duplicated weights)
            inits = {i.name for i in fm.graph.initializer}
            assert not [n for n in fm.graph.node if n.op_type == "ReduceSum" and n.input[0] in inits]


def test_graph_speed_hits_the_pytorch_frame_count() -> None:
    """Upstream's text graph computes ceil(pfl / P * (P+S) / speed) in float32; with the speed
    from :func:`graph_speed` that is exactly the PyTorch count, over many shapes."""
    rng = np.random.default_rng(0)
    for _ in range(5000):
        pfl, p, s = int(rng.integers(1, 4000)), int(rng.integers(1, 400)), int(rng.integers(1, 600))
        speed = float(rng.uniform(0.5, 2.0))
        n = predicted_frames(pfl, p, s, speed)
        g = np.float32(graph_speed(pfl, p, s, n))
        got = np.ceil(np.float32(pfl) / np.float32(p) * np.float32(p + s) / g)
        assert int(got) == n


@pytest.mark.parametrize("variant", VARIANTS)
def test_text_encoder_matches_torch(variant: str, reference_dir: Path, exported: dict[str, Path]) -> None:
    model = load_model(reference_dir / "models" / variant)
    onnx_model = load_onnx_model(exported[variant], "fp32", num_threads=1)
    tokens, prompt_tokens, _, prompt_len = _inputs(onnx_model)
    # the graph's own output vs the wrapper it was traced from, for an arbitrary speed
    args = (torch.tensor(tokens), torch.tensor(prompt_tokens), torch.tensor(prompt_len), torch.tensor(1.3))
    with torch.inference_mode():
        expected = TextConditionModel(model)(*args)
    got = onnx_model.text_encoder(np.asarray(tokens), np.asarray(prompt_tokens), prompt_len, 1.3)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    # with graph_speed: the text condition of the PyTorch sampling path, frame for frame
    total = predicted_frames(prompt_len, len(prompt_tokens[0]), len(tokens[0]), 1.0)
    with torch.inference_mode():
        expected, _ = model.forward_text_inference_ratio_duration(
            tokens, prompt_tokens, torch.tensor([prompt_len]), 1.0
        )
    speed = graph_speed(prompt_len, len(prompt_tokens[0]), len(tokens[0]), total)
    got = onnx_model.text_encoder(np.asarray(tokens), np.asarray(prompt_tokens), prompt_len, speed)
    assert got.shape == expected.shape == (1, total, model.feat_dim)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoder_step_matches_torch(variant: str, reference_dir: Path, exported: dict[str, Path]) -> None:
    model = load_model(reference_dir / "models" / variant)
    onnx_model = load_onnx_model(exported[variant], "fp32", num_threads=1)
    gen = torch.Generator().manual_seed(1)
    frames, feat = 61, onnx_model.feat_dim  # odd T exercises the downsample padding
    x, speech = (torch.randn(1, frames, feat, generator=gen) for _ in range(2))
    text = torch.randn(1, frames, model.feat_dim, generator=gen)
    g = _guidance(reference_dir, variant)
    step = model.make_step_fn(text, speech, None, g)  # the PyTorch sampler's step function
    for t in (0.3, 0.7):  # both sides of the t > 0.5 guidance switch
        with torch.inference_mode():
            expected = step(torch.tensor(t), x)
        got = onnx_model.decoder_step(torch.tensor(t), x, text, speech, g)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_full_sample_with_fixed_noise(
    variant: str, precision: str, reference_dir: Path, exported: dict[str, Path]
) -> None:
    model = load_model(reference_dir / "models" / variant)
    onnx_model = load_onnx_model(exported[variant], precision, num_threads=1)
    tokens, prompt_tokens, prompt, prompt_len = _inputs(onnx_model, seed=2)
    total = predicted_frames(prompt_len, len(prompt_tokens[0]), len(tokens[0]), 1.0)
    x0 = torch.randn(1, total, onnx_model.feat_dim, generator=torch.Generator().manual_seed(3))
    kwargs: dict[str, Any] = {
        "options": SamplerOptions(t_shift=0.5, num_step=4, guidance_scale=_guidance(reference_dir, variant)),
        "x0": x0,
    }
    expected, expected_lens = model.sample(
        tokens, prompt_tokens, prompt, torch.tensor([prompt_len]), **kwargs
    )
    got, lens = onnx_model.sample(tokens, prompt_tokens, prompt, torch.tensor([prompt_len]), **kwargs)
    assert torch.equal(lens, expected_lens) and got.shape == expected.shape
    if precision == "fp32":
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-3)
    else:
        rel = float((got - expected).norm() / expected.norm())
        assert rel < 0.10, rel


def test_seeded_noise_matches_torch(reference_dir: Path, exported: dict[str, Path]) -> None:
    """With a generator (the pipeline's seed) the ONNX sampler draws the same x0 as PyTorch."""
    model = load_model(reference_dir / "models" / "zipvoice_distill")
    onnx_model = load_onnx_model(exported["zipvoice_distill"], "fp32", num_threads=1)
    tokens, prompt_tokens, prompt, prompt_len = _inputs(onnx_model, seed=4)
    guidance = _guidance(reference_dir, "zipvoice_distill")
    kwargs: dict[str, Any] = {"options": SamplerOptions(t_shift=0.5, num_step=2, guidance_scale=guidance)}
    a, _ = model.sample(
        tokens,
        prompt_tokens,
        prompt,
        torch.tensor([prompt_len]),
        generator=torch.Generator().manual_seed(9),
        **kwargs,
    )
    b, _ = onnx_model.sample(
        tokens,
        prompt_tokens,
        prompt,
        torch.tensor([prompt_len]),
        generator=torch.Generator().manual_seed(9),
        **kwargs,
    )
    torch.testing.assert_close(b, a, rtol=0, atol=1e-3)


def test_batch_is_generated_item_by_item(reference_dir: Path, exported: dict[str, Path]) -> None:
    onnx_model = load_onnx_model(exported["zipvoice_distill"], "fp32", num_threads=1)
    tokens, prompt_tokens, prompt, prompt_len = _inputs(onnx_model, seed=5)
    short = tokens[0][:10]
    gen = torch.Generator().manual_seed(0)
    pred, lens = onnx_model.sample(
        [tokens[0], short], prompt_tokens * 2, prompt.repeat(2, 1, 1), torch.tensor([prompt_len] * 2),
        SamplerOptions(t_shift=0.5, num_step=2, guidance_scale=3.0), generator=gen,
    )  # fmt: skip
    assert lens.tolist() == [
        predicted_frames(prompt_len, 17, 35, 1.0) - prompt_len,
        predicted_frames(prompt_len, 17, 10, 1.0) - prompt_len,
    ]
    assert pred.shape[0] == 2 and pred.shape[1] == int(lens.max())
    assert torch.all(pred[1, int(lens[1]) :] == 0) and torch.isfinite(pred).all()


def test_pipeline_end_to_end(reference_dir: Path, exported: dict[str, Path]) -> None:
    """``ZipVoicePipeline`` runs the ONNX backend unchanged; fp32 matches the PyTorch pipeline."""
    from api.zipvoice.pipeline import ZipVoicePipeline
    from api.zipvoice.vocos import load_vocos
    from tests.zipvoice.test_pipeline_golden import ReplayTokenizer

    model_dir = reference_dir / "models" / "zipvoice_distill"
    guidance = _guidance(reference_dir, "zipvoice_distill")
    prompt_wav = reference_dir / golden.e2e_case(reference_dir, golden.e2e_case_names()[0])["prompt_wav"]
    text, prompt_text = "Some words to say.", "What the prompt says."
    tokenizer = ReplayTokenizer(
        model_dir / "tokens.txt", {text: list(range(5, 25)), prompt_text: list(range(30, 44))}
    )
    vocoder = load_vocos(reference_dir / "vocos-mel-24khz-tiny")
    wavs = {}
    for name, model in (
        ("torch", load_model(model_dir)),
        ("onnx", load_onnx_model(exported["zipvoice_distill"], "fp32", num_threads=1)),
    ):
        pipeline = ZipVoicePipeline(model, tokenizer, vocoder)
        result = pipeline.generate(text, prompt_text, prompt_wav, num_step=4, guidance_scale=guidance, seed=7)
        assert result.num_chunks == 1 and result.sampling_rate == 24000
        wavs[name] = result.wav
    assert wavs["onnx"].shape == wavs["torch"].shape and wavs["onnx"].shape[-1] > 0
    torch.testing.assert_close(wavs["onnx"], wavs["torch"], rtol=0, atol=1e-3)
