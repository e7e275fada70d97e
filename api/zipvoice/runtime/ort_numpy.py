"""ZipVoice on ONNX Runtime without PyTorch: sessions, the official file layout, a numpy Euler sampler.

This module imports only numpy and (lazily) onnxruntime, so the default install (no ``torch``
extra) can clone voices with ``zipvoice`` / ``zipvoice_distill``.

Files: a variant folder as published on the hub (``k2-fsa/ZipVoice/<variant>/``) or as written by
``zipvoice-export``: ``text_encoder.onnx``, ``fm_decoder.onnx``, ``text_encoder_int8.onnx``,
``fm_decoder_int8.onnx``, ``model.json``, ``tokens.txt``. Inputs and outputs by name:

* text encoder: ``tokens (1,S) int64, prompt_tokens (1,P) int64, prompt_features_len () int64,
  speed () float -> text_condition (1,T,Ft)``;
* decoder step: ``t () float, x (1,T,F), text_condition (1,T,Ft), speech_condition (1,T,F),
  guidance_scale () float -> v (1,T,F)`` (guidance inside the graph, distill or CFG).

``feat_dim`` comes from the decoder's ``feat_dim`` metadata (written by upstream's exporter and
ours), else from the ``x`` input's static last dimension.

Sampling: the same schedule as :func:`api.zipvoice.model.sampler.get_timesteps`
(``t_shift·u / (1 + (t_shift-1)·u)`` over ``num_step + 1`` points, float32) and explicit Euler
steps. The initial noise comes from a numpy ``Generator`` (``np.random.default_rng(seed)``), one
``standard_normal((frames, F), float32)`` draw per chunk in text order. With the same seed this
path gives the same noise with or without torch installed (the ONNX engine always uses it), but
not the noise of the PyTorch engine (``torch.randn``): seeds are reproducible per engine, not
across the PyTorch and ONNX engines.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from api.zipvoice.runtime.heap import release_free_heap
from api.zipvoice.sampling import SamplerOptions

log = logging.getLogger(__name__)

TEXT_ENCODER = "text_encoder"
FM_DECODER = "fm_decoder"
TEXT_INPUTS = ("tokens", "prompt_tokens", "prompt_features_len", "speed")
TEXT_OUTPUTS = ("text_condition",)
FM_INPUTS = ("t", "x", "text_condition", "speech_condition", "guidance_scale")
FM_OUTPUTS = ("v",)
PRECISIONS = ("fp32", "int8")
#: the per-variant files besides the graphs (tokenizer table, model config)
CONFIG_FILES = ("model.json", "tokens.txt")


def onnx_file_names(precision: str) -> tuple[str, str]:
    """``(text_encoder file, fm_decoder file)`` for ``fp32`` or ``int8`` (upstream's names)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    suffix = "" if precision == "fp32" else "_int8"
    return f"{TEXT_ENCODER}{suffix}.onnx", f"{FM_DECODER}{suffix}.onnx"


def onnx_files(directory: Path, precision: str) -> tuple[Path, Path] | None:
    """Both graph files of a precision in ``directory``, or ``None`` when either is missing."""
    text, fm = (directory / n for n in onnx_file_names(precision))
    return (text, fm) if text.is_file() and fm.is_file() else None


def variant_files(precision: str) -> tuple[str, ...]:
    """Every file the torch-free engine reads from a variant folder."""
    return (*onnx_file_names(precision), *CONFIG_FILES)


def missing_variant_files(directory: Path, precision: str) -> list[str]:
    """Names of :func:`variant_files` absent from ``directory``."""
    return [n for n in variant_files(precision) if not (directory / n).is_file()]


# -- sessions ------------------------------------------------------------------------------


def resolve_threads(num_threads: int) -> int:
    return num_threads if num_threads > 0 else (os.cpu_count() or 1)


def onnx_providers(device: str = "cpu") -> list[str]:
    """CUDA first when asked for (``cuda``/``auto``) and onnxruntime has it; CPU always."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return providers


def session_options(num_threads: int = 0) -> Any:
    """``SessionOptions``: explicit threads (intra = ``num_threads``, inter = 1), sequential
    execution, all graph optimisations, and no memory pattern.

    Memory pattern off: with it, ORT plans one block for all of a run's intermediates per input
    shape and, on the second run of a shape, allocates that planned block in the arena *beside*
    the buffers the first run left there. The decoder's frame count changes with every text, so
    the plan never pays back and the arena holds both: measured on the full-size int8 decoder at
    1,660 frames (~16 s), resident memory after two steps 869 MB with it, 579 MB without, at the
    same step time. The CPU arena itself stays on (without it the peak is higher: every step
    mallocs and frees its intermediates, 794 MB at the same size).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = resolve_threads(num_threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3
    return opts


def make_session(
    path: Path, num_threads: int = 0, device: str = "cpu", graph_cache: Path | None = None
) -> Any:
    """An ``InferenceSession`` with :func:`session_options` on :func:`onnx_providers`.

    ``graph_cache``: on the CPU provider, load the graph with its ``Softplus`` nodes rewritten for
    the vectorised kernels (:mod:`api.zipvoice.runtime.graph_opt`, written once into this folder);
    ``None`` loads the file as is."""
    import onnxruntime as ort

    opts = session_options(num_threads)
    providers = onnx_providers(device)
    if graph_cache is not None and providers == ["CPUExecutionProvider"]:
        from api.zipvoice.runtime.graph_opt import fast_activation_graph

        path = fast_activation_graph(path, graph_cache)
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


#: run config entry: at the end of the run, ORT frees the CPU arena's regions no tensor uses
ARENA_SHRINKAGE = ("memory.enable_memory_arena_shrinkage", "cpu:0")


class ArenaReleasingSession:
    """An ``InferenceSession`` (CPU) that can give its arena back: :meth:`run_and_release` ends the
    run by freeing the CPU arena's unused regions (:data:`ARENA_SHRINKAGE`) and trimming the C heap
    (:func:`release_free_heap`); with ``every_run`` plain :meth:`run` does it too. Everything
    else is the session's own.

    Without it the arena keeps the regions of the session's largest run for its life: the int8
    decoder's intermediates of a pass (~78 MB at 760 frames, the 5 s text) stay resident while
    the vocoder, the next request's prompt and every later pass run on top of them. The decoder
    releases once per pass, on its last Euler step (:meth:`OnnxZipVoice.sample_chunk`): a
    release costs the next run its page faults (~14,000 for 760 frames, a few % of a step), so
    not every step. Measured on the full-size int8 distill engine (fresh process, 1 thread, the
    5 s text): peak resident 434 -> 408 MB.
    """

    def __init__(self, session: Any, *, every_run: bool = False) -> None:
        import onnxruntime as ort

        self.session = session
        self.every_run = every_run
        self.release_options = ort.RunOptions()
        self.release_options.add_run_config_entry(*ARENA_SHRINKAGE)

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        if self.every_run and run_options is None:
            return self.run_and_release(output_names, input_feed)
        return self.session.run(output_names, input_feed, run_options)

    def run_and_release(self, output_names: Any, input_feed: Any) -> Any:
        """``run``, then the arena's free regions and the C heap's free pages go back to the system."""
        try:
            return self.session.run(output_names, input_feed, self.release_options)
        finally:
            release_free_heap()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def check_io(session: Any, inputs: Sequence[str], outputs: Sequence[str], what: str) -> None:
    """Raise ``ValueError`` unless the session has exactly these input and output names."""
    got_in = [i.name for i in session.get_inputs()]
    got_out = [o.name for o in session.get_outputs()]
    if got_in != list(inputs) or got_out != list(outputs):
        raise ValueError(
            f"{what}: inputs {got_in} / outputs {got_out}, expected {list(inputs)} / {list(outputs)}"
        )


def decoder_feat_dim(session: Any) -> int:
    """``feat_dim`` metadata of a decoder graph, else the static last dim of its ``x`` input."""
    meta = session.get_modelmeta().custom_metadata_map
    if "feat_dim" in meta:
        return int(meta["feat_dim"])
    dim = session.get_inputs()[1].shape[-1]
    if isinstance(dim, int):
        return dim
    raise ValueError("fm decoder: no feat_dim metadata and a dynamic feature dimension")


# -- frame count and schedule --------------------------------------------------------------


def predicted_frames(prompt_features_len: int, num_prompt_tokens: int, num_tokens: int, speed: float) -> int:
    """Total frames (prompt + generated) as the PyTorch model computes them (float32 arithmetic):
    ``prompt_len + ceil(prompt_len / P * S / speed)``."""
    f32 = np.float32
    ratio = f32(prompt_features_len) / f32(num_prompt_tokens)
    gen = f32(f32(ratio * f32(num_tokens)) / f32(speed))
    return int(prompt_features_len + int(np.ceil(gen)))


def graph_speed(prompt_features_len: int, num_prompt_tokens: int, num_tokens: int, frames: int) -> float:
    """The ``speed`` input for which upstream's text graph (``ceil(pfl / P * (P + S) / speed)``)
    produces exactly ``frames`` frames, with half a frame of margin against rounding."""
    if frames < 1:
        raise ValueError("frames must be positive")
    return prompt_features_len * (num_prompt_tokens + num_tokens) / (num_prompt_tokens * (frames - 0.5))


def get_timesteps(num_step: int, t_shift: float = 1.0) -> np.ndarray:
    """``num_step + 1`` float32 times in [0, 1], shifted as the PyTorch sampler's."""
    if num_step < 1:
        raise ValueError("num_step must be at least 1")
    u = np.linspace(0.0, 1.0, num_step + 1, dtype=np.float32)
    s = np.float32(t_shift)
    return (s * u / (np.float32(1) + (s - np.float32(1)) * u)).astype(np.float32)


StepFn = Callable[[np.float32, np.ndarray], np.ndarray]


def euler_sample(step_fn: StepFn, x0: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
    """Integrate ``dx/dt = step_fn(t, x)`` from ``x0`` with explicit Euler steps over ``timesteps``."""
    x = x0.astype(np.float32, copy=True)
    for k in range(len(timesteps) - 1):
        t = timesteps[k]
        v = step_fn(t, x)
        x = x + v * (timesteps[k + 1] - t)
    return x


# -- the model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxChunkResult:
    """Generated features of one chunk: ``(frames, F)`` float32, feat_scale domain."""

    features: np.ndarray


class OnnxZipVoice:
    """The two ZipVoice graphs on ONNX Runtime, sampling in numpy (batch of one, as the graphs)."""

    def __init__(self, text_session: Any, fm_session: Any, name: str = "onnx") -> None:
        check_io(text_session, TEXT_INPUTS, TEXT_OUTPUTS, "text encoder")
        check_io(fm_session, FM_INPUTS, FM_OUTPUTS, "fm decoder")
        self.text_session = text_session
        self.fm_session = fm_session
        self.feat_dim = decoder_feat_dim(fm_session)
        self.name = name

    def text_condition(
        self, tokens: Sequence[int], prompt_tokens: Sequence[int], prompt_len: int, frames: int
    ) -> np.ndarray:
        """``(1, frames, Ft)`` text condition for a chunk of ``frames`` total frames."""
        speed = graph_speed(prompt_len, len(prompt_tokens), len(tokens), frames)
        (out,) = self.text_session.run(
            None,
            {
                "tokens": np.asarray([list(tokens)], dtype=np.int64),
                "prompt_tokens": np.asarray([list(prompt_tokens)], dtype=np.int64),
                "prompt_features_len": np.array(prompt_len, dtype=np.int64),
                "speed": np.array(speed, dtype=np.float32),
            },
        )
        if out.shape[1] != frames:
            raise RuntimeError(f"text encoder gave {out.shape[1]} frames, expected {frames}")
        return np.asarray(out, dtype=np.float32)

    def decoder_step(
        self,
        t: np.float32,
        x: np.ndarray,
        text_cond: np.ndarray,
        speech_cond: np.ndarray,
        g: float,
        *,
        release: bool = False,
    ) -> np.ndarray:
        """One guided velocity; ``release``: the session gives its arena back after this run
        (:class:`ArenaReleasingSession`; the last step of a pass)."""
        run = getattr(self.fm_session, "run_and_release", None) if release else None
        (v,) = (run or self.fm_session.run)(
            None,
            {
                "t": np.array(t, dtype=np.float32),
                "x": np.ascontiguousarray(x, dtype=np.float32),
                "text_condition": text_cond,
                "speech_condition": speech_cond,
                "guidance_scale": np.array(g, dtype=np.float32),
            },
        )
        return np.asarray(v, dtype=np.float32)

    def sample_chunk(
        self,
        tokens: Sequence[int],
        prompt_tokens: Sequence[int],
        prompt_features: np.ndarray,
        options: SamplerOptions,
        *,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Features ``(generated frames, F)`` for one chunk after a ``(prompt frames, F)`` prompt
        (``options.duration`` must be ``"predict"``: the frame count comes from the prompt)."""
        if options.duration != "predict":
            raise ValueError('the numpy sampler supports duration="predict" only')
        speed = options.speed
        if not tokens or not prompt_tokens:
            raise ValueError("empty token sequence")
        if speed <= 0 or not math.isfinite(speed):
            raise ValueError("speed must be a positive number")
        prompt_features = np.asarray(prompt_features, dtype=np.float32)
        plen, feat = prompt_features.shape
        if feat != self.feat_dim:
            raise ValueError(f"prompt features have {feat} dims, the model {self.feat_dim}")
        total = predicted_frames(plen, len(prompt_tokens), len(tokens), speed)
        text_cond = self.text_condition(tokens, prompt_tokens, plen, total)
        speech_cond = np.zeros((1, total, feat), dtype=np.float32)
        speech_cond[0, :plen] = prompt_features[:total]
        x0 = rng.standard_normal((1, total, feat), dtype=np.float32)
        g = float(options.guidance_scale)

        timesteps = get_timesteps(options.num_step, options.t_shift)

        def step(t: np.float32, x: np.ndarray) -> np.ndarray:
            last = t == timesteps[-2]  # the pass's last step releases the decoder's arena
            return self.decoder_step(t, x, text_cond, speech_cond, g, release=bool(last))

        x1 = euler_sample(step, x0, timesteps)
        return np.ascontiguousarray(x1[0, plen:total])


def read_model_json(directory: Path) -> dict[str, Any]:
    with (directory / "model.json").open(encoding="utf-8") as fh:
        config = json.load(fh)
    if not isinstance(config, dict):
        raise ValueError(f"{directory / 'model.json'}: not a JSON object")
    feature = config.get("feature", {})
    if isinstance(feature, dict) and feature.get("type", "vocos") != "vocos":
        raise ValueError(f"{directory / 'model.json'}: unsupported feature type {feature.get('type')!r}")
    return config


def load_onnx_dir(
    directory: Path,
    precision: str = "int8",
    num_threads: int = 0,
    device: str = "cpu",
    graph_cache: Path | None = None,
) -> OnnxZipVoice:
    """Sessions for a variant folder (official hub layout or ``zipvoice-export`` output); the
    graphs are required, ``model.json`` is checked when present (feature type). ``graph_cache``:
    see :func:`make_session`."""
    text_name, fm_name = onnx_file_names(precision)
    missing = [n for n in (text_name, fm_name) if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not found in {directory}")
    if (directory / "model.json").is_file():
        read_model_json(directory)
    text: Any = make_session(directory / text_name, num_threads, device, graph_cache)
    fm: Any = make_session(directory / fm_name, num_threads, device, graph_cache)
    if fm.get_providers()[0] == "CPUExecutionProvider":  # (the shrinkage entry names the CPU arena)
        # the text encoder runs once per pass: it may release every time; the decoder per pass
        text, fm = ArenaReleasingSession(text, every_run=True), ArenaReleasingSession(fm)
    # ORT parsed each graph's protobuf and copied its initializers: the freed parse buffers stay
    # in the C heap unless trimmed (int8 decoder, 122 MB file: 330 -> 269 MB resident)
    release_free_heap()
    log.info("ONNX %s sessions from %s (%s)", precision, directory, ", ".join(fm.get_providers()))
    return OnnxZipVoice(text, fm, name=f"onnx-{precision}")
