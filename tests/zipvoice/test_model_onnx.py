"""The export wrappers trace to ONNX (dynamic batch/time) and run in onnxruntime."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from api.zipvoice.model.checkpoint import load_model
from api.zipvoice.model.export import FlowMatchingStepModel, TextConditionModel

FM_INPUTS = ["t", "x", "text_condition", "speech_condition", "guidance_scale"]
TEXT_INPUTS = ["tokens", "prompt_tokens", "prompt_features_len", "speed"]


@pytest.mark.parametrize("name", ["zipvoice", "zipvoice_distill"])
def test_onnx_round_trip(name: str, reference_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = load_model(reference_dir / "models" / name)
    fm, text = FlowMatchingStepModel(model).eval(), TextConditionModel(model).eval()
    seq = {0: "N", 1: "T"}
    feat = model.feat_dim
    example = (torch.tensor(0.5), *(torch.randn(1, 40, feat) for _ in range(3)), torch.tensor(1.0))
    text_example = (torch.tensor([[2, 3, 4, 5]]), torch.tensor([[0, 1]]), torch.tensor(10), torch.tensor(1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            fm, example, str(tmp_path / "fm.onnx"), dynamo=False, opset_version=13,
            input_names=FM_INPUTS, output_names=["v"],
            dynamic_axes={"x": seq, "text_condition": seq, "speech_condition": seq, "v": seq},
        )  # fmt: skip
        torch.onnx.export(
            text, text_example, str(tmp_path / "text.onnx"), dynamo=False, opset_version=13,
            input_names=TEXT_INPUTS, output_names=["text_condition"],
            dynamic_axes={"tokens": seq, "prompt_tokens": seq, "text_condition": seq},
        )  # fmt: skip

    session = ort.InferenceSession(str(tmp_path / "fm.onnx"))
    for t in (0.3, 0.7):  # both sides of the t > 0.5 switch; odd T exercises the downsample padding
        inputs = (torch.tensor(t), *(torch.randn(1, 57, feat) for _ in range(3)), torch.tensor(2.0))
        with torch.inference_mode():
            expected = fm(*inputs).numpy()
        got = session.run(None, {k: v.numpy() for k, v in zip(FM_INPUTS, inputs, strict=True)})[0]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)

    session = ort.InferenceSession(str(tmp_path / "text.onnx"))
    inputs = (  # arbitrary lengths (token ids below the smallest vocabulary, 358)
        torch.randint(1, 300, (1, 33)),
        torch.randint(1, 300, (1, 47)),
        torch.tensor(233),
        torch.tensor(1.0),
    )
    with torch.inference_mode():
        expected = text(*inputs).numpy()
    got = session.run(None, {k: v.numpy() for k, v in zip(TEXT_INPUTS, inputs, strict=True)})[0]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
