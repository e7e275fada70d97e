"""ZipVoice's flow-matching decoder as a TensorRT engine (fp16), built from ``fm_decoder.onnx``.

Import-guarded: importing this module needs neither ``tensorrt`` nor a GPU; :func:`trt_available`
says whether it can run. The text encoder (one call per chunk) stays in ONNX Runtime (CUDA
provider when present); the decoder step (16-32 calls per chunk) runs in TensorRT, with I/O in
CUDA torch tensors.

Shape profile: ``x``/``text_condition``/``speech_condition`` are ``(1, T, F)`` with ``T`` from
1 to :func:`max_frames` — the chunker's longest prompt + chunk (``ZIPVOICE_MAX_CHUNK_SECONDS``;
40 s for dialog models) plus a margin. A longer input raises instead of silently returning
garbage (upstream's fixed 3000-frame profile produced silence past it).

Engines are cached in ``<cache_dir>/tensorrt/<variant>/``, named by the sha256 of the ONNX file,
the profile's max frames, the TensorRT version and the GPU; a changed ONNX file (or any of the
others) gives a new name, so the engine is rebuilt.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from api.assets import sha256_file
from api.zipvoice.onnx_export import FM_INPUTS

log = logging.getLogger(__name__)

FRAMES_PER_SECOND = 24000 / 256
OPT_FRAMES = 1000
FRAME_MARGIN = 1.2  # chunk-duration estimates are per-token averages; leave room above them


def trt_available() -> tuple[bool, str | None]:
    """(usable, reason): needs the ``tensorrt`` package and a CUDA GPU visible to torch."""
    if importlib.util.find_spec("tensorrt") is None:
        return False, "the 'tensorrt' package is not installed (pip install tensorrt)"
    if not torch.cuda.is_available():
        return False, "TensorRT needs an NVIDIA GPU (torch.cuda.is_available() is false)"
    return True, None


def max_frames(max_chunk_seconds: float, dialog: bool = False) -> int:
    """Upper end of the T profile: the chunk target (dialog: at least 40 s) x margin, in frames."""
    seconds = max(max_chunk_seconds, 40.0) if dialog else max_chunk_seconds
    return math.ceil(seconds * FRAMES_PER_SECOND * FRAME_MARGIN)


def engine_path(
    cache_dir: Path, variant: str, onnx_path: Path, frames: int, trt_version: str, gpu: str
) -> Path:
    """Cache file for an engine; every input of the build is in the name."""
    gpu_tag = "".join(c if c.isalnum() else "-" for c in gpu).strip("-").lower()
    name = f"fm_decoder-{sha256_file(onnx_path)[:16]}-T{frames}-trt{trt_version}-{gpu_tag}.plan"
    return cache_dir / "tensorrt" / variant / name


def build_engine(onnx_path: Path, out: Path, frames: int, fp16: bool = True) -> None:
    """Parse ``onnx_path`` and serialise an engine with one dynamic-T profile to ``out``."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # deprecated (default) in TRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name in ("t", "guidance_scale"):
            continue  # scalars, static
        feat = int(tensor.shape[-1])
        opt = min(OPT_FRAMES, frames)
        profile.set_shape(tensor.name, (1, 1, feat), (1, opt, feat), (1, frames, feat))
    config.add_optimization_profile(profile)
    log.info(
        "building TensorRT engine from %s (T <= %d, fp16=%s); this takes minutes", onnx_path, frames, fp16
    )
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT engine build failed for {onnx_path}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out)
    log.info("TensorRT engine %s built in %.0f s", out, time.perf_counter() - start)


class TrtDecoderStep:
    """A :class:`api.zipvoice.runtime.onnx_backend.DecoderStepFn` running a TensorRT engine."""

    def __init__(self, plan: Path, frames: int, device: str = "cuda") -> None:
        import tensorrt as trt

        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"could not load TensorRT engine {plan}")
        self.context = self.engine.create_execution_context()
        self.device = torch.device(device)
        self.frames = frames
        self.stream = torch.cuda.Stream(self.device)
        self.lock = threading.Lock()  # one execution context: one call at a time
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        if sorted(self.inputs) != sorted(FM_INPUTS):
            raise ValueError(f"engine inputs {self.inputs}, expected {list(FM_INPUTS)}")

    def __call__(
        self, t: Tensor, x: Tensor, text_condition: Tensor, speech_condition: Tensor, guidance_scale: float
    ) -> Tensor:
        frames = x.shape[1]
        if frames > self.frames:
            raise ValueError(
                f"{frames} frames exceed the TensorRT profile ({self.frames}); raise the profile via "
                "ZIPVOICE_MAX_CHUNK_SECONDS or use shorter chunks"
            )
        dev = self.device
        feeds = {
            "t": t.to(dev, torch.float32).reshape(()).contiguous(),
            "x": x.to(dev, torch.float32).contiguous(),
            "text_condition": text_condition.to(dev, torch.float32).contiguous(),
            "speech_condition": speech_condition.to(dev, torch.float32).contiguous(),
            "guidance_scale": torch.tensor(float(guidance_scale), dtype=torch.float32, device=dev),
        }
        out = torch.empty_like(feeds["x"])
        with self.lock, torch.cuda.stream(self.stream):
            for name, tensor in feeds.items():
                self.context.set_input_shape(name, tuple(tensor.shape))
                self.context.set_tensor_address(name, tensor.data_ptr())
            self.context.set_tensor_address(self.output, out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            self.stream.synchronize()
        return out


def load_trt_model(
    onnx_dir: Path,
    cache_dir: Path,
    variant: str,
    max_chunk_seconds: float,
    dialog: bool = False,
    num_threads: int = 0,
    device: str = "cuda",
) -> Any:
    """A :class:`GraphZipVoice` with a TensorRT decoder (built or loaded from the cache) and the
    fp32 ONNX text encoder in ONNX Runtime."""
    import tensorrt as trt

    from api.zipvoice.runtime.onnx_backend import GraphZipVoice, OrtTextEncoder, make_session

    ok, reason = trt_available()
    if not ok:
        raise RuntimeError(reason)
    fm_onnx = onnx_dir / "fm_decoder.onnx"
    text_onnx = onnx_dir / "text_encoder.onnx"
    for path in (fm_onnx, text_onnx):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (TensorRT engines are built from the fp32 ONNX)")
    frames = max_frames(max_chunk_seconds, dialog)
    dev = torch.device(device if device.startswith("cuda") else "cuda")
    plan = engine_path(cache_dir, variant, fm_onnx, frames, trt.__version__, torch.cuda.get_device_name(dev))
    if not plan.is_file():
        build_engine(fm_onnx, plan, frames)
    step = TrtDecoderStep(plan, frames, device=str(dev))
    text = OrtTextEncoder(make_session(text_onnx, num_threads, "cuda"))
    model = GraphZipVoice(
        text, step, feat_dim=int(step.engine.get_tensor_shape("x")[-1]), name="tensorrt-fp16"
    )
    return model
