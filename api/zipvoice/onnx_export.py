"""Export a ZipVoice checkpoint to ONNX: ``text_encoder.onnx`` + ``fm_decoder.onnx`` (+ ``*_int8.onnx``).

The graphs have the inputs, outputs and dynamic axes of upstream's published files
(``k2-fsa/ZipVoice``: ``<variant>/text_encoder.onnx``, ``fm_decoder.onnx``), so those work with
:mod:`api.zipvoice.runtime.onnx_backend` too:

* text encoder: ``tokens (N,T) int64, prompt_tokens (N,T) int64, prompt_features_len () int64,
  speed () float -> text_condition (N,T,feat_dim)``;
* flow-matching decoder (one guided Euler step): ``t () float, x (N,T,F), text_condition
  (N,T,feat_dim), speech_condition (N,T,F), guidance_scale () float -> v (N,T,F)``.

Exporter choice: the TorchScript exporter (``dynamo=False``). The wrappers in
:mod:`api.zipvoice.model.export` are traceable (no data-dependent Python control flow), tracing
gives the same opset-13 graph structure as upstream's files (which ``quantize_dynamic`` and
TensorRT handle well), and it needs only the ``onnx`` package. torch 2.13's default dynamo
exporter needs ``onnxscript``, turns the data-dependent frame count of the text encoder into
symbolic-shape guards, and produces opset-18 graphs with different node patterns; nothing is
gained for this model.

int8: ``onnxruntime.quantization.quantize_dynamic`` on ``MatMul`` nodes with ``QInt8`` weights,
as upstream (activations are quantised per call at run time).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from api.zipvoice.model.checkpoint import find_checkpoint, load_model
from api.zipvoice.model.export import FlowMatchingStepModel, TextConditionModel
from api.zipvoice.model.zipvoice import ZipVoice, ZipVoiceDialogStereo
from api.zipvoice.runtime.ort_numpy import (  # names and I/O: one definition, shared with the runtime
    CONFIG_FILES,
    FM_DECODER,
    FM_INPUTS,
    FM_OUTPUTS,
    PRECISIONS,
    TEXT_ENCODER,
    TEXT_INPUTS,
    TEXT_OUTPUTS,
    onnx_file_names,
    onnx_files,
)

log = logging.getLogger(__name__)

OPSET = 13
__all__ = [
    "FM_DECODER",
    "FM_INPUTS",
    "FM_OUTPUTS",
    "PRECISIONS",
    "TEXT_ENCODER",
    "TEXT_INPUTS",
    "TEXT_OUTPUTS",
    "ExportResult",
    "export_onnx",
    "onnx_file_names",
    "onnx_files",
]

Progress = Callable[[str], None]


def checkpoint_digest(model_dir: Path) -> str:
    """Short sha256 of the checkpoint + model.json (names the export cache folder).

    Memoised on the files' paths, sizes and mtimes (availability checks call this often).
    """
    paths = (find_checkpoint(model_dir), model_dir / "model.json")
    stats = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    return _digest(stats)


@functools.lru_cache(maxsize=64)
def _digest(stats: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for name, _, _ in stats:
        path = Path(name)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def feature_dims(model: ZipVoice) -> tuple[int, int]:
    """``(text_condition dim, x/speech_condition dim)``; the stereo model has 2x features."""
    f = model.feat_dim
    return f, 2 * f if isinstance(model, ZipVoiceDialogStereo) else f


def fold_weight_reductions(proto: Any) -> int:
    """Replace ``ReduceSum`` nodes over initializers by their value; drop unused initializers.

    ``ActivationLinear`` folds the Swoosh constant into its bias as ``-c * weight.sum(1)``. The
    TorchScript exporter's constant folding does not fold that ``ReduceSum``, so the graph kept
    every such weight twice (as is for the sum, transposed for the ``MatMul``): +185 MB in the base
    decoder, and an fp32 copy left over in the int8 file. Returns the number of folded nodes.
    """
    import numpy as np
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    consts = {
        node.output[0]: numpy_helper.to_array(attr.t)
        for node in graph.node
        if node.op_type == "Constant"
        for attr in node.attribute
        if attr.name == "value"
    }
    for name, init in inits.items():
        consts.setdefault(name, numpy_helper.to_array(init))
    kept = []
    folded = 0
    for node in graph.node:
        axes_name = node.input[1] if len(node.input) > 1 else ""
        if node.op_type == "ReduceSum" and node.input[0] in inits and (not axes_name or axes_name in consts):
            attrs = {a.name: a.i for a in node.attribute}
            data = consts[node.input[0]]
            axes = consts[axes_name].reshape(-1) if axes_name else np.array([], np.int64)
            if axes.size == 0 and attrs.get("noop_with_empty_axes", 0):
                value = data
            else:
                value = data.sum(
                    axis=tuple(int(a) for a in axes) if axes.size else None,
                    keepdims=bool(attrs.get("keepdims", 1)),
                )
            graph.initializer.append(
                numpy_helper.from_array(np.asarray(value, dtype=data.dtype), node.output[0])
            )
            folded += 1
            continue
        kept.append(node)
    del graph.node[:]
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    graph.node.extend(n for n in kept if n.op_type != "Constant" or n.output[0] in used)
    unused = [i for i in graph.initializer if i.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    return folded


def _finish(path: Path, meta: dict[str, str]) -> None:
    """Fold weight reductions and add metadata, in place."""
    import onnx

    proto = onnx.load(str(path))
    folded = fold_weight_reductions(proto)
    log.debug("%s: folded %d weight reductions", path, folded)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings for shape arithmetic are expected
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )


def export_text_encoder(model: ZipVoice, path: Path, variant: str) -> None:
    wrapper = TextConditionModel(model).eval()
    example = (
        torch.tensor([[2, 3, 4, 5]], dtype=torch.int64),
        torch.tensor([[0, 1]], dtype=torch.int64),
        torch.tensor(10, dtype=torch.int64),
        torch.tensor(1.0, dtype=torch.float32),
    )
    seq = {0: "N", 1: "T"}
    _export(
        wrapper,
        example,
        path,
        input_names=list(TEXT_INPUTS),
        output_names=list(TEXT_OUTPUTS),
        dynamic_axes={"tokens": seq, "prompt_tokens": seq, "text_condition": seq},
    )
    _finish(
        path,
        {
            "version": "1",
            "comment": "ZipVoice text encoder",
            "variant": variant,
            "feat_dim": str(model.feat_dim),
        },
    )


def export_fm_decoder(model: ZipVoice, path: Path, variant: str) -> None:
    wrapper = FlowMatchingStepModel(model).eval()
    text_dim, dim = feature_dims(model)
    frames = 200
    gen = torch.Generator().manual_seed(0)
    example = (
        torch.tensor(0.5),
        torch.randn(1, frames, dim, generator=gen),
        torch.randn(1, frames, text_dim, generator=gen),
        torch.randn(1, frames, dim, generator=gen),
        torch.tensor(1.0),
    )
    seq = {0: "N", 1: "T"}
    _export(
        wrapper,
        example,
        path,
        input_names=list(FM_INPUTS),
        output_names=list(FM_OUTPUTS),
        dynamic_axes={"x": seq, "text_condition": seq, "speech_condition": seq, "v": seq},
    )
    _finish(
        path,
        {
            "version": "1",
            "comment": "ZipVoice flow-matching decoder",
            "variant": variant,
            "feat_dim": str(dim),
            "sample_rate": "24000",
            "n_fft": "1024",
            "hop_length": "256",
            "window_length": "1024",
            "num_mels": "100",
        },
    )


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of the MatMul weights (upstream's recipe)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        model_input=str(src),
        model_output=str(dst),
        op_types_to_quantize=["MatMul"],
        weight_type=QuantType.QInt8,
    )


@dataclass
class ExportResult:
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def export_onnx(
    model_dir: Path | str,
    out_dir: Path | str | None = None,
    *,
    int8: bool = True,
    fp32: bool = True,
    model: ZipVoice | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Export ``model_dir``'s checkpoint into ``out_dir`` (default: ``model_dir``).

    Writes ``text_encoder.onnx`` and ``fm_decoder.onnx``, and with ``int8`` also
    ``text_encoder_int8.onnx`` and ``fm_decoder_int8.onnx`` (the fp32 files are needed for those;
    with ``fp32=False`` they are written to a temporary name and removed). Files are written to a
    temporary name first and renamed, so a crash never leaves a truncated ``.onnx`` behind.
    """
    model_dir = Path(model_dir)
    out = Path(out_dir) if out_dir is not None else model_dir
    out.mkdir(parents=True, exist_ok=True)
    say: Progress = progress or log.info
    result = ExportResult(out)
    if model is None:
        say(f"loading {model_dir}")
        model = load_model(model_dir)
    variant = str(getattr(model, "variant", "zipvoice"))

    def step(name: str, fn: Callable[[Path], None], final: Path) -> Path:
        tmp = final.with_name(final.stem + ".partial.onnx")
        say(f"{name} -> {final.name} ...")
        start = time.perf_counter()
        fn(tmp)
        tmp.replace(final)
        result.seconds[final.name] = time.perf_counter() - start
        say(f"{name} done in {result.seconds[final.name]:.1f} s ({final.stat().st_size / 1e6:.1f} MB)")
        result.files[final.name] = final
        return final

    fp32_names = onnx_file_names("fp32")
    text_fp32 = step(
        "export text encoder", lambda p: export_text_encoder(model, p, variant), out / fp32_names[0]
    )
    fm_fp32 = step("export fm decoder", lambda p: export_fm_decoder(model, p, variant), out / fp32_names[1])
    if int8:
        int8_names = onnx_file_names("int8")
        step("quantize text encoder (int8)", lambda p: quantize_int8(text_fp32, p), out / int8_names[0])
        step("quantize fm decoder (int8)", lambda p: quantize_int8(fm_fp32, p), out / int8_names[1])
    if not fp32:
        for path in (text_fp32, fm_fp32):
            path.unlink()
            result.files.pop(path.name, None)
    # the official hub layout: the graphs beside model.json and tokens.txt
    for name in CONFIG_FILES:
        src, dst = model_dir / name, out / name
        if src.is_file() and src.resolve() != dst.resolve():
            tmp = dst.with_name(dst.name + ".partial")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
            result.files[name] = dst
    return result
