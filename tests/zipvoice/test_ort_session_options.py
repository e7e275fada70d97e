"""ORT session options of the torch-free runtime (memory: no memory pattern, arena kept).

The memory effect itself needs the full-size decoder (``scripts/bench/peers.py`` measures it);
here: the options are what the sessions get, and results do not depend on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from api.zipvoice.runtime.ort_numpy import (
    ARENA_SHRINKAGE,
    ArenaReleasingSession,
    OnnxZipVoice,
    load_onnx_dir,
    session_options,
)

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


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    """The tiny distill's int8 graphs (the session-wide export of ``official_layout``)."""
    from tests.zipvoice.official_layout import official_hub

    return official_hub(tmp_path_factory, reference_dir) / "k2-fsa" / "ZipVoice" / "zipvoice_distill"


def test_arena_release_options() -> None:
    import onnxruntime as ort

    session = ArenaReleasingSession(object())
    assert isinstance(session.release_options, ort.RunOptions)
    key, value = ARENA_SHRINKAGE
    assert session.release_options.get_run_config_entry(key) == value == "cpu:0"


def test_decoder_releases_once_per_pass_and_text_encoder_every_run(int8_dir: Path) -> None:
    from api.zipvoice.sampling import SamplerOptions

    model = load_onnx_dir(int8_dir, "int8", num_threads=1)
    assert isinstance(model.fm_session, ArenaReleasingSession) and not model.fm_session.every_run
    assert isinstance(model.text_session, ArenaReleasingSession) and model.text_session.every_run
    calls: list[str] = []
    for name, session in (("text", model.text_session), ("fm", model.fm_session)):
        inner = session.session

        class Spy:
            def __init__(self, inner: object, name: str) -> None:
                self.inner, self.name = inner, name

            def run(self, names: object, feed: object, run_options: object = None) -> object:
                released = (
                    run_options is not None
                    and run_options.get_run_config_entry(ARENA_SHRINKAGE[0]) == "cpu:0"
                )  # type: ignore[attr-defined]
                calls.append(f"{self.name}{'!' if released else ''}")
                return self.inner.run(names, feed, run_options)  # type: ignore[attr-defined]

        session.session = Spy(inner, name)
    rng = np.random.default_rng(0)
    prompt = rng.standard_normal((30, model.feat_dim), dtype=np.float32)
    opts = SamplerOptions(num_step=4, guidance_scale=3.0)
    for tokens in ([5, 6, 7, 8], [9, 10, 11]):  # two passes
        model.sample_chunk(tokens, [1, 2, 3], prompt, opts, rng=rng)
    assert calls == ["text!", "fm", "fm", "fm", "fm!"] * 2


def test_release_does_not_change_the_result(int8_dir: Path) -> None:
    model = load_onnx_dir(int8_dir, "int8", num_threads=1)
    rng = np.random.default_rng(1)
    x, tc, sc = (rng.standard_normal((1, 50, model.feat_dim), dtype=np.float32) for _ in range(3))
    kept = model.decoder_step(np.float32(0.4), x, tc, sc, 3.0)
    released = model.decoder_step(np.float32(0.4), x, tc, sc, 3.0, release=True)
    np.testing.assert_array_equal(kept, released)
    # plain sessions (no release) work the same
    plain = OnnxZipVoice(model.text_session.session, model.fm_session.session)
    np.testing.assert_array_equal(plain.decoder_step(np.float32(0.4), x, tc, sc, 3.0, release=True), kept)
