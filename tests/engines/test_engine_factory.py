"""ZipVoice engine selection (``ENGINE``): the decision table with fake GPU/tensorrt seams, and
the real CPU path (ONNX export into the cache, then synthesis through the ONNX backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from api.engines.zipvoice import ZipVoiceEngine
from api.errors import ServiceUnavailableError
from api.settings import Settings
from api.zipvoice.runtime.select import EngineChoice, RuntimeProbe, choose_engine


def probe(cuda: bool = False, trt: bool = False, ort: bool = True, onnx: bool = True) -> RuntimeProbe:
    return RuntimeProbe(cuda=lambda: cuda, tensorrt=lambda: trt, onnxruntime=lambda: ort, onnx=lambda: onnx)


def settings(**kw: object) -> Settings:
    return Settings(allow_downloads=False, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "ready", "p", "expected"),
    [
        # auto: TensorRT on a GPU with tensorrt
        ({}, True, probe(cuda=True, trt=True), ("trt", "cuda", "fp16")),
        ({}, False, probe(cuda=True, trt=True), ("trt", "cuda", "fp16")),  # exports the ONNX first
        ({"device": "cuda:1"}, True, probe(cuda=True, trt=True), ("trt", "cuda:1", "fp16")),
        # auto: GPU without tensorrt (or nothing to build from) -> PyTorch CUDA
        ({}, True, probe(cuda=True), ("torch", "cuda", "fp32")),
        ({}, False, probe(cuda=True, trt=True, onnx=False), ("torch", "cuda", "fp32")),
        # auto on CPU: ONNX int8 when the files exist, never an implicit export
        ({}, True, probe(), ("onnx", "cpu", "int8")),
        ({}, False, probe(), ("torch", "cpu", "fp32")),
        ({}, True, probe(ort=False), ("torch", "cpu", "fp32")),
        # DEVICE=cpu hides the GPU
        ({"device": "cpu"}, True, probe(cuda=True, trt=True), ("onnx", "cpu", "int8")),
        # explicit engines
        ({"engine": "torch"}, True, probe(), ("torch", "cpu", "fp32")),
        ({"engine": "onnx"}, False, probe(), ("onnx", "cpu", "int8")),
        ({"engine": "onnx"}, True, probe(cuda=True), ("onnx", "cuda", "int8")),
        ({"engine": "trt"}, True, probe(cuda=True, trt=True), ("trt", "cuda", "fp16")),
    ],
)
def test_decision_table(
    kw: dict[str, object], ready: bool, p: RuntimeProbe, expected: tuple[str, str, str]
) -> None:
    choice = choose_engine(settings(**kw), ready, p)
    assert choice.ok, choice.reason
    assert (choice.kind, choice.device, choice.precision) == expected


@pytest.mark.parametrize(
    ("kw", "ready", "p", "needle"),
    [
        ({"engine": "trt"}, True, probe(cuda=False, trt=True), "GPU"),
        ({"engine": "trt"}, True, probe(cuda=True, trt=False), "tensorrt"),
        ({"engine": "trt", "device": "cpu"}, True, probe(cuda=True, trt=True), "DEVICE=cpu"),
        ({"engine": "trt"}, False, probe(cuda=True, trt=True, onnx=False), "onnx"),
        ({"engine": "onnx"}, True, probe(ort=False), "onnxruntime"),
        ({"engine": "onnx"}, False, probe(onnx=False), "zipvoice-export"),
    ],
)
def test_explicit_engine_that_cannot_run(
    kw: dict[str, object], ready: bool, p: RuntimeProbe, needle: str
) -> None:
    choice = choose_engine(settings(**kw), ready, p)
    assert not choice.ok and choice.reason is not None and needle in choice.reason


def test_onnx_precision_setting_is_read_when_present() -> None:
    s = settings(engine="onnx")
    object.__setattr__(s, "__dict__", {**s.__dict__, "onnx_precision": "fp32"})
    assert choose_engine(s, True, probe()) == EngineChoice("onnx", "cpu", "fp32")


def _engine(
    reference_dir: Path, tmp_path: Path, variant: str = "zipvoice_distill", **kw: object
) -> ZipVoiceEngine:
    s = settings(
        zipvoice_model_dir=reference_dir / "models",
        vocos_model_dir=reference_dir / "vocos-mel-24khz-tiny",
        cache_dir=tmp_path,
        **kw,
    )
    return ZipVoiceEngine(s, variant)


def test_trt_unavailable_here_names_the_reason(reference_dir: Path, tmp_path: Path) -> None:
    engine = _engine(reference_dir, tmp_path, engine="trt")
    engine.probe = probe(cuda=False, trt=False)
    avail = engine.availability()
    assert not avail.ok and avail.reason is not None and "ENGINE=trt" in avail.reason
    with pytest.raises(ServiceUnavailableError, match="ENGINE=trt"):
        engine.load()


def test_models_endpoint_shows_the_reason(reference_dir: Path, tmp_path: Path) -> None:
    from api.engines.registry import EngineRegistry

    s = settings(
        zipvoice_model_dir=reference_dir / "models",
        vocos_model_dir=reference_dir / "vocos-mel-24khz-tiny",
        cache_dir=tmp_path,
        engine="trt",
        device="cpu",
    )
    registry = EngineRegistry(s)
    avail = registry.availability("zipvoice")
    assert not avail.ok and avail.reason is not None and "ENGINE=trt" in avail.reason


def test_auto_on_cpu_without_onnx_files_stays_on_torch(reference_dir: Path, tmp_path: Path) -> None:
    engine = _engine(reference_dir, tmp_path)
    engine.probe = probe()
    assert engine.engine_choice() == EngineChoice("torch", "cpu")


def test_real_cpu_path_exports_then_synthesizes_with_onnx(reference_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from api.audio.decode import decode_audio
    from api.engines.base import ReferenceVoice, SynthesisOptions
    from api.voices.sources import audio_digest

    engine = _engine(reference_dir, tmp_path, engine="onnx", device="cpu", num_threads=1)
    assert engine.availability().ok
    engine.load()  # exports into <cache_dir>/onnx/zipvoice_distill/<digest>/
    assert engine.runtime == "onnx-int8 (cpu)"
    exported = list((tmp_path / "onnx" / "zipvoice_distill").glob("*/fm_decoder_int8.onnx"))
    assert len(exported) == 1
    samples, rate = decode_audio((reference_dir / "audio" / "prompt.wav").read_bytes(), max_seconds=60)
    voice = ReferenceVoice(
        samples, rate, "The quick brown fox jumps over the lazy dog.", audio_digest(samples, rate), "file",
        transcript_source="given",
    )  # fmt: skip
    opts = SynthesisOptions(seed=3, num_steps=2)
    a = next(engine.synthesize(["Hello there."], voice, opts))
    b = next(engine.synthesize(["Hello there."], voice, opts))
    assert a.sample_rate == 24000 and a.samples.shape[-1] > 0 and np.isfinite(a.samples).all()
    assert np.array_equal(a.samples, b.samples)
    # now that the files exist, auto picks ONNX int8 on this CPU machine
    auto = _engine(reference_dir, tmp_path)
    auto.probe = probe()
    assert auto.engine_choice() == EngineChoice("onnx", "cpu", "int8")
