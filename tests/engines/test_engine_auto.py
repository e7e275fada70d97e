"""``ENGINE=auto`` with fake runtime probes: TensorRT on a GPU with engines, else PyTorch CUDA,
else ONNX (CUDA provider in fp32 where present, else CPU with ONNX_PRECISION), else PyTorch CPU;
without torch, ONNX without error; dialog variants without torch say they need the extra."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.engines.zipvoice import ZipVoiceEngine
from api.settings import Settings
from api.zipvoice.runtime.select import EngineChoice, RuntimeProbe, choose_engine


def probe(
    *, cuda: bool = False, trt: bool = False, ort: bool = True, onnx: bool = True, torch: bool = True,
    ort_cuda: bool = False,
) -> RuntimeProbe:  # fmt: skip
    return RuntimeProbe(
        cuda=lambda: cuda,
        tensorrt=lambda: trt,
        onnxruntime=lambda: ort,
        onnx=lambda: onnx,
        torch=lambda: torch,
        ort_cuda=lambda: ort_cuda,
    )


def settings(**kw: object) -> Settings:
    return Settings(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("p", "ready", "fetchable", "expected"),
    [
        # the order: TensorRT (GPU + engines) > torch CUDA > ONNX > torch CPU
        (probe(cuda=True, trt=True), True, True, ("trt", "cuda", "fp16")),
        (probe(cuda=True), True, True, ("torch", "cuda", "fp32")),
        (probe(ort_cuda=True), False, True, ("onnx", "cuda", "fp32")),
        (probe(), False, True, ("onnx", "cpu", "int8")),
        (probe(), True, False, ("onnx", "cpu", "int8")),
        (probe(), False, False, ("torch", "cpu", "fp32")),
        (probe(ort=False), True, True, ("torch", "cpu", "fp32")),
        # no torch installed: ONNX, whatever the GPU probes say about torch
        (probe(torch=False, cuda=True, trt=True), False, True, ("onnx", "cpu", "int8")),
        (probe(torch=False, ort_cuda=True), False, True, ("onnx", "cuda", "fp32")),
        (probe(torch=False), True, False, ("onnx", "cpu", "int8")),
    ],
)
def test_auto_order(p: RuntimeProbe, ready: bool, fetchable: bool, expected: tuple[str, str, str]) -> None:
    choice = choose_engine(settings(), ready, p, onnx_fetchable=fetchable)
    assert choice.ok, choice.reason
    assert (choice.kind, choice.device, choice.precision) == expected


def test_device_cpu_keeps_onnx_on_the_cpu_provider() -> None:
    choice = choose_engine(
        settings(device="cpu"), False, probe(ort_cuda=True, cuda=True), onnx_fetchable=True
    )
    assert choice == EngineChoice("onnx", "cpu", "int8")


def test_onnx_precision_fp32_on_cpu() -> None:
    choice = choose_engine(settings(onnx_precision="fp32"), False, probe(), onnx_fetchable=True)
    assert choice == EngineChoice("onnx", "cpu", "fp32")


@pytest.mark.parametrize(
    ("kw", "p", "needle"),
    [
        ({}, probe(torch=False), "torch is not installed"),  # nothing to run ONNX from, no torch
        ({}, probe(torch=False, ort=False), "neither onnxruntime nor torch"),
        ({"engine": "torch"}, probe(torch=False), "ENGINE=torch"),
        ({"engine": "trt"}, probe(torch=False, trt=True), "ENGINE=trt"),
    ],
)
def test_without_torch_the_reason_is_given(kw: dict[str, object], p: RuntimeProbe, needle: str) -> None:
    choice = choose_engine(settings(**kw), False, p, onnx_fetchable=False)
    assert not choice.ok and choice.reason is not None and needle in choice.reason


def test_engine_without_torch_prefers_downloadable_onnx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty HF cache, whatever this machine has
    s = settings(cache_dir=tmp_path, allow_downloads=True)
    engine = ZipVoiceEngine(s, "zipvoice_distill")
    engine.probe = probe(torch=False)
    assert engine.engine_choice() == EngineChoice("onnx", "cpu", "int8")
    # downloads off and nothing local: unavailable, naming the files and the folders
    off = ZipVoiceEngine(settings(cache_dir=tmp_path, allow_downloads=False), "zipvoice_distill")
    off.probe = probe(torch=False)
    avail = off.availability()
    assert not avail.ok and avail.reason is not None
    assert "text_encoder_int8.onnx" in avail.reason and "ZIPVOICE_MODEL_DIR/zipvoice_distill/" in avail.reason
    assert "VOCOS_MODEL_DIR/" in avail.reason


@pytest.mark.parametrize("variant", ["zipvoice_dialog", "zipvoice_dialog_stereo"])
def test_dialog_variants_without_torch(tmp_path: Path, variant: str) -> None:
    engine = ZipVoiceEngine(settings(cache_dir=tmp_path, allow_downloads=True), variant)
    engine.probe = probe(torch=False)
    avail = engine.availability()
    assert not avail.ok and avail.reason == "no official ONNX files; needs the torch extra"
    # with torch they use PyTorch (no official ONNX files to fetch)
    engine.probe = probe()
    assert engine.engine_choice() == EngineChoice("torch", "cpu")


def test_models_listing_marks_the_dialog_variants(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app

    app = create_app(
        settings(cache_dir=tmp_path, voices_dir=tmp_path / "v", preload_models=[], allow_downloads=False)
    )
    with TestClient(app) as client:
        models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    for name in ("zipvoice_dialog", "zipvoice_dialog_stereo"):
        assert "no official ONNX files" in models[name]["description"]
    for name in ("zipvoice", "zipvoice_distill"):
        assert "no official ONNX files" not in models[name]["description"]
