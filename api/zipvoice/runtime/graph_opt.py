"""Load-time graph rewrites for ONNX Runtime on CPU: the same function, faster kernels.

ZipVoice's Zipformer layers use the SwooshL/SwooshR activations, which the exporter writes as
``Softplus`` nodes (82 in the decoder). ONNX Runtime's CPU ``Softplus`` kernel evaluates
``log1p(exp(x))`` one element at a time: profiled on the full-size int8 distill decoder (760
frames, 1 thread) it was 51 % of a decoder step, more than every int8 matmul together. The same
function written as ``Relu(x) - Log(Sigmoid(Abs(x)))`` runs on vectorised kernels (MLAS sigmoid)
and is 2.6-3x faster per element; a whole decoder step is 1.4-1.5x faster (int8), 1.1x (fp32).

Exactness: ``softplus(x) = max(x, 0) + log1p(exp(-|x|)) = max(x, 0) - log(sigmoid(|x|))`` for
every real ``x``, with no overflow (``sigmoid(|x|)`` lies in [0.5, 1]). On the fp32 graphs the
rewritten decoder matches the original to float rounding (max |diff| ~3e-5 on outputs of ~1); on
int8 graphs the rounding differences move the per-tensor dynamic quantisation of the next matmul,
so outputs differ from the original by about as much as the original differs from fp32 (the
int8 graphs' own error), not more. ``tests/zipvoice/runtime/test_graph_opt.py`` pins both.

The rewritten graph is written once into a cache folder (keyed by the source file's resolved
path, size, mtime and :data:`REWRITE_VERSION`) and loaded from there by path, so a server pays
the rewrite on its first load of a file only. The rewrite runs in a child process (``python -m
api.zipvoice.runtime.graph_opt``): parsing and writing the protobuf holds ~3x the file (+360 MB
for the 122 MB int8 decoder, ~1 s), which the server process would otherwise keep as its peak
resident size. Any failure (read-only cache, a graph over protobuf's 2 GB limit, a malformed
file, a crash of the child) logs a warning and keeps the original file: the rewrite only ever
changes speed. Setting: ``ZIPVOICE_ONNX_FAST_ACTIVATIONS``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: bump when the rewrite changes: older cached graphs are then rebuilt, not reused
REWRITE_VERSION = 1
#: suffix of the empty marker written for a graph with nothing to rewrite (it is loaded as is)
PLAIN_MARKER = ".plain"
#: a rewrite that takes longer is abandoned (the file is loaded as is)
REWRITE_TIMEOUT_S = 600.0


def _subgraphs(node: Any) -> list[Any]:
    import onnx

    out = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            out.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            out.extend(attr.graphs)
    return out


def replace_softplus(graph: Any) -> int:
    """Rewrite every ``Softplus`` node of ``graph`` (and of its subgraphs) in place as
    ``Relu(x) - Log(Sigmoid(Abs(x)))``, keeping the node's output name; return how many."""
    from onnx import helper

    count = 0
    nodes = []
    for node in graph.node:
        for sub in _subgraphs(node):
            count += replace_softplus(sub)
        if node.op_type != "Softplus" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        (x,) = node.input
        (y,) = node.output
        base = f"{node.name or y}/softplus"
        t_abs, t_sig, t_log, t_relu = (f"{y}/softplus_{k}" for k in ("abs", "sigmoid", "log", "relu"))
        nodes += [
            helper.make_node("Abs", [x], [t_abs], name=f"{base}/Abs"),
            helper.make_node("Sigmoid", [t_abs], [t_sig], name=f"{base}/Sigmoid"),
            helper.make_node("Log", [t_sig], [t_log], name=f"{base}/Log"),
            helper.make_node("Relu", [x], [t_relu], name=f"{base}/Relu"),
            helper.make_node("Sub", [t_relu, t_log], [y], name=f"{base}/Sub"),
        ]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def cache_key(src: Path) -> str:
    """Identity of a source graph file: resolved path, size, mtime and the rewrite's version."""
    real = src.resolve()
    st = real.stat()
    ident = f"{real}|{st.st_size}|{st.st_mtime_ns}|v{REWRITE_VERSION}"
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def fast_activation_graph(src: Path, cache_dir: Path) -> Path:
    """The graph file to load for ``src``: its rewritten copy in ``cache_dir`` (written now if
    missing), or ``src`` itself when it has no ``Softplus`` or the rewrite cannot be made."""
    try:
        key = cache_key(src)
    except OSError as exc:
        log.warning("graph rewrite skipped for %s: %s", src, exc)
        return src
    target = cache_dir / f"{key}-{src.name}"
    marker = cache_dir / f"{key}-{src.name}{PLAIN_MARKER}"
    if target.is_file():
        return target
    if marker.is_file():
        return src
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__, str(src), str(target), str(marker)],
            capture_output=True,
            text=True,
            timeout=REWRITE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("graph rewrite skipped for %s (%s); loading it as is", src, exc)
        return src
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        log.warning(
            "graph rewrite skipped for %s (exit %s: %s); loading it as is", src, done.returncode, tail[0]
        )
        return src
    if target.is_file():
        log.info("%s: Softplus rewritten for the CPU kernels -> %s", src.name, target)
        return target
    return src


def _write_rewritten(src: Path, target: Path, marker: Path) -> Path:
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        raise ValueError("external tensor data is not supported by the rewrite")
    count = replace_softplus(model.graph)
    target.parent.mkdir(parents=True, exist_ok=True)
    if count == 0:
        marker.touch()
        return src
    fd, tmp = tempfile.mkstemp(prefix=".rewrite-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)  # (mkstemp makes it private; the source graph is not)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m api.zipvoice.runtime.graph_opt SRC TARGET MARKER``: the rewrite, run in a child
    process so the server never holds the parsed protobuf (~3x the file at its peak)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m api.zipvoice.runtime.graph_opt SRC TARGET MARKER", file=sys.stderr)
        return 2
    src, target, marker = (Path(a) for a in args)
    try:
        _write_rewritten(src, target, marker)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
