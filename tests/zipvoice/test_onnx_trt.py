"""TensorRT backend: pure helpers everywhere; engine build + parity with ONNX only on a GPU.

The GPU test (``-m gpu``) needs ``pip install tensorrt`` and a CUDA device; it skips otherwise.
Tolerance: the fp16 engine's decoder step within 5 % relative L2 error of the fp32 ONNX step.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from api.zipvoice.runtime.trt_backend import engine_path, max_frames, trt_available


def test_profile_covers_the_chunker() -> None:
    # 25 s chunks: 25 x 93.75 frames, plus the 20 % margin; dialog chunks target 40 s
    assert max_frames(25.0) == 2813
    assert max_frames(25.0) > 25.0 * 24000 / 256
    assert max_frames(25.0, dialog=True) == 4500
    assert max_frames(60.0) > 3000  # past upstream's fixed profile


def test_engine_cache_key_follows_the_onnx_file(tmp_path: Path) -> None:
    onnx = tmp_path / "fm_decoder.onnx"
    onnx.write_bytes(b"one")
    first = engine_path(tmp_path, "zipvoice", onnx, 2813, "10.0", "NVIDIA H100 80GB")
    assert first == engine_path(tmp_path, "zipvoice", onnx, 2813, "10.0", "NVIDIA H100 80GB")
    onnx.write_bytes(b"two")
    assert engine_path(tmp_path, "zipvoice", onnx, 2813, "10.0", "NVIDIA H100 80GB") != first
    assert first.parent == tmp_path / "tensorrt" / "zipvoice"


def test_availability_is_reported_without_tensorrt() -> None:
    ok, reason = trt_available()
    if importlib.util.find_spec("tensorrt") is None:
        assert not ok and reason is not None and "tensorrt" in reason


@pytest.mark.gpu
def test_trt_step_matches_onnx(reference_dir: Path, tmp_path: Path) -> None:
    ok, reason = trt_available()
    if not ok:
        pytest.skip(reason or "no TensorRT")
    from api.zipvoice.onnx_export import export_onnx
    from api.zipvoice.runtime.onnx_backend import load_onnx_model
    from api.zipvoice.runtime.trt_backend import load_trt_model

    export_onnx(reference_dir / "models" / "zipvoice_distill", tmp_path / "onnx", int8=False)
    trt_model = load_trt_model(tmp_path / "onnx", tmp_path / "cache", "zipvoice_distill", 25.0)
    ort_model = load_onnx_model(tmp_path / "onnx", "fp32", num_threads=1)
    gen = torch.Generator().manual_seed(0)
    x, text, speech = (torch.randn(1, 301, 100, generator=gen) for _ in range(3))
    expected = ort_model.decoder_step(torch.tensor(0.4), x, text, speech, 3.0)
    got = trt_model.decoder_step(torch.tensor(0.4), x, text, speech, 3.0).cpu()
    assert float((got - expected).norm() / expected.norm()) < 0.05
    # a cached engine is reused: same file, no rebuild
    plans = list((tmp_path / "cache" / "tensorrt" / "zipvoice_distill").glob("*.plan"))
    assert len(plans) == 1
    load_trt_model(tmp_path / "onnx", tmp_path / "cache", "zipvoice_distill", 25.0)
    assert list((tmp_path / "cache" / "tensorrt" / "zipvoice_distill").glob("*.plan")) == plans
