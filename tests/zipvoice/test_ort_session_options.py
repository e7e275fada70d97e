"""ORT session options of the torch-free runtime (memory: no memory pattern, arena kept).

The memory effect itself needs the full-size decoder (``scripts/bench/peers.py`` measures it);
here: the options are what the sessions get, and results do not depend on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from api.zipvoice.runtime.ort_numpy import load_onnx_dir, session_options

FIXTURES = Path("/work/shared/fixtures/zipvoice-reference")
MODEL = FIXTURES / "models" / "zipvoice_distill"


def test_session_options() -> None:
    opts = session_options(2)
    assert opts.enable_mem_pattern is False
    assert opts.enable_cpu_mem_arena is True
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1


@pytest.mark.skipif(not MODEL.is_dir(), reason="fixtures missing")
def test_sessions_use_them_and_outputs_match_mem_pattern(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import onnxruntime as ort

    from api.zipvoice.onnx_export import export_onnx

    export_onnx(MODEL, tmp_path, int8=False)
    model = load_onnx_dir(tmp_path, "fp32", num_threads=1)
    assert model.fm_session.get_session_options().enable_mem_pattern is False
    with_pattern = ort.SessionOptions()
    with_pattern.intra_op_num_threads = 1
    reference = ort.InferenceSession(
        str(tmp_path / "fm_decoder.onnx"), sess_options=with_pattern, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    for frames in (40, 90, 40):  # shapes change between calls, as with every new text
        x, tc, sc = (rng.standard_normal((1, frames, 100), dtype=np.float32) for _ in range(3))
        ours = model.decoder_step(np.float32(0.3), x, tc, sc, 1.0)
        (ref,) = reference.run(
            None,
            {
                "t": np.array(0.3, np.float32),
                "x": x,
                "text_condition": tc,
                "speech_condition": sc,
                "guidance_scale": np.array(1.0, np.float32),
            },
        )
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
