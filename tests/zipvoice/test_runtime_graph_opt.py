"""The load-time Softplus rewrite (api/zipvoice/runtime/graph_opt.py): same function, cached file.

The speed-up itself needs the full-size decoder (``scripts/bench.py --sections peers`` measures
it); here: the rewritten graphs compute what the originals compute, the file is written once and
reused, and every failure falls back to the original file.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from api.settings import Settings
from api.zipvoice.runtime import graph_opt
from api.zipvoice.runtime.graph_opt import (
    PLAIN_MARKER,
    fast_activation_graph,
    replace_softplus,
)
from api.zipvoice.runtime.ort_numpy import load_onnx_dir
from api.zipvoice.runtime.select import onnx_graph_cache


def _session(model: Any) -> Any:
    import onnxruntime as ort

    data = model if isinstance(model, (str, bytes)) else model.SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def _softplus_model(with_subgraph: bool = False) -> Any:
    """``y = Softplus(x)``, and optionally ``z = If(c, then: Softplus(x), else: x)``."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    nodes = [helper.make_node("Softplus", ["x"], ["y"], name="sp")]
    inputs, outputs = [x], [y]
    if with_subgraph:
        inputs.append(helper.make_tensor_value_info("c", TensorProto.BOOL, []))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [None]))
        branch_out = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None])
        then = helper.make_graph([helper.make_node("Softplus", ["x"], ["b"])], "then", [], [branch_out])
        other = helper.make_graph([helper.make_node("Identity", ["x"], ["b"])], "else", [], [branch_out])
        nodes.append(helper.make_node("If", ["c"], ["z"], then_branch=then, else_branch=other))
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_rewrite_is_softplus_everywhere_on_the_real_line() -> None:
    model = _softplus_model(with_subgraph=True)
    original = _session(model)
    assert replace_softplus(model.graph) == 2
    ops = [n.op_type for n in model.graph.node]
    then = next(
        a.g for n in model.graph.node if n.op_type == "If" for a in n.attribute if a.name == "then_branch"
    )
    assert "Softplus" not in ops and "Softplus" not in [n.op_type for n in then.node]
    onnx.checker.check_model(model)
    rewritten = _session(model)
    # wide range: exp(x) overflows float32 beyond ~88; softplus(x) -> x there, -> 0 far below
    x = np.concatenate(
        [np.linspace(-120, 120, 20001, dtype=np.float32), np.array([-1e30, -1e4, 0.0, 1e4, 1e30], np.float32)]
    )
    exact = np.logaddexp(0.0, x.astype(np.float64))
    for c in (True, False):
        feed = {"x": x, "c": np.array(c)}
        ref_y, ref_z = original.run(None, feed)
        new_y, new_z = rewritten.run(None, feed)
        assert np.all(np.isfinite(new_y))
        # float32 rounding of a value ~|x|, and the CPU's sigmoid/log kernels (vectorised
        # approximations that differ between instruction sets) near 0: a few 1e-7 here
        np.testing.assert_allclose(new_y, exact, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(new_y, ref_y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(new_z, ref_z, rtol=1e-6, atol=1e-6)


def test_rewrite_keeps_graphs_without_softplus() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    before = graph.SerializeToString()
    assert replace_softplus(graph) == 0
    assert graph.SerializeToString() == before


@pytest.fixture(scope="module")
def hub_variant(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    """The tiny distill's fp32 and int8 graphs (the session-wide export of ``official_layout``)."""
    from tests.zipvoice.official_layout import official_hub

    return official_hub(tmp_path_factory, reference_dir) / "k2-fsa" / "ZipVoice" / "zipvoice_distill"


def _decoder_feeds(frames: int, n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [
        {
            "t": np.array(t, np.float32),
            "x": rng.standard_normal((1, frames, 100), dtype=np.float32),
            "text_condition": rng.standard_normal((1, frames, 100), dtype=np.float32),
            "speech_condition": rng.standard_normal((1, frames, 100), dtype=np.float32),
            "guidance_scale": np.array(3.0, np.float32),
        }
        for t in np.linspace(0.05, 0.95, n)
    ]


def test_decoder_rewrite_fp32_is_exact_and_int8_no_worse(hub_variant: Path, tmp_path: Path) -> None:
    cache = tmp_path / "graphs"
    fp32 = _session(str(hub_variant / "fm_decoder.onnx"))
    fp32_new_path = fast_activation_graph(hub_variant / "fm_decoder.onnx", cache)
    int8_path = hub_variant / "fm_decoder_int8.onnx"
    int8_new_path = fast_activation_graph(int8_path, cache)
    assert fp32_new_path.parent == cache and int8_new_path.parent == cache
    for path in (fp32_new_path, int8_new_path):
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert "Softplus" not in ops and {"Sigmoid", "Log", "Relu", "Abs"} <= ops
    fp32_new, int8, int8_new = (_session(str(p)) for p in (fp32_new_path, int8_path, int8_new_path))
    err_old, err_new = [], []
    for feed in _decoder_feeds(120, 4):
        (ref,) = fp32.run(None, feed)
        (ours,) = fp32_new.run(None, feed)
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
        err_old.append(np.abs(int8.run(None, feed)[0] - ref).mean())
        err_new.append(np.abs(int8_new.run(None, feed)[0] - ref).mean())
    # the int8 graphs' own quantisation error against fp32 is unchanged by the rewrite
    assert np.mean(err_new) <= 1.5 * np.mean(err_old) + 1e-4, (err_old, err_new)


def test_cached_file_is_reused_and_rebuilt_when_the_source_changes(
    hub_variant: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "text_encoder_int8.onnx"
    src.write_bytes((hub_variant / "text_encoder_int8.onnx").read_bytes())
    cache = tmp_path / "graphs"
    first = fast_activation_graph(src, cache)
    assert first != src and first.is_file()
    assert oct(first.stat().st_mode & 0o777) == oct(0o644)

    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached graph should have been reused")

    monkeypatch.setattr(graph_opt.subprocess, "run", no_child)
    assert fast_activation_graph(src, cache) == first
    monkeypatch.undo()
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = fast_activation_graph(src, cache)
    assert second != first and second.is_file()
    assert not list(cache.glob(".rewrite-*"))  # no temporary left behind


def test_graph_without_softplus_gets_a_marker_and_loads_as_is(tmp_path: Path) -> None:
    src = tmp_path / "plain.onnx"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    cache = tmp_path / "graphs"
    assert fast_activation_graph(src, cache) == src
    assert [p.name.endswith(PLAIN_MARKER) for p in cache.iterdir()] == [True]
    assert fast_activation_graph(src, cache) == src


@pytest.mark.parametrize("case", ["corrupt", "unwritable", "missing"])
def test_failures_fall_back_to_the_original_file(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "model.onnx"
    cache = tmp_path / "graphs"
    if case == "corrupt":
        src.write_bytes(b"\x08\x07 this is not a protobuf model \xff\xff")
    elif case == "unwritable":
        onnx.save(_softplus_model(), str(src))
        cache.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger=graph_opt.__name__):
        assert fast_activation_graph(src, cache) == src
    assert "graph rewrite skipped" in caplog.text


def test_child_process_entry_point_usage() -> None:
    assert graph_opt.main([]) == 2
    done = subprocess.run(
        [sys.executable, "-m", "api.zipvoice.runtime.graph_opt"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "usage" in done.stderr


def test_loaded_sessions_run_the_rewritten_graphs(hub_variant: Path, tmp_path: Path) -> None:
    cache = tmp_path / "graphs"
    plain = load_onnx_dir(hub_variant, "fp32", num_threads=1)
    fast = load_onnx_dir(hub_variant, "fp32", num_threads=1, graph_cache=cache)
    written = sorted(p.name.split("-", 1)[1] for p in cache.glob("*.onnx"))
    assert written == ["fm_decoder.onnx", "text_encoder.onnx"]
    assert plain.feat_dim == fast.feat_dim  # the decoder's metadata survives the rewrite
    tokens, prompt_tokens = [5, 9, 12, 30, 7], [3, 4, 8]
    a = plain.text_condition(tokens, prompt_tokens, 40, 110)
    b = fast.text_condition(tokens, prompt_tokens, 40, 110)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    feed = _decoder_feeds(110, 1)[0]
    args = (np.float32(feed["t"]), feed["x"], a, feed["speech_condition"], 3.0)
    np.testing.assert_allclose(fast.decoder_step(*args), plain.decoder_step(*args), rtol=1e-4, atol=1e-4)


def test_setting_chooses_the_cache(tmp_path: Path) -> None:
    on = Settings(cache_dir=tmp_path)
    assert on.zipvoice_onnx_fast_activations is True
    assert onnx_graph_cache(on) == tmp_path / "onnx-graphs"
    off = Settings(cache_dir=tmp_path, zipvoice_onnx_fast_activations=False)
    assert onnx_graph_cache(off) is None
