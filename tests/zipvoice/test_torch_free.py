"""The ONNX engine without PyTorch: modules import with ``torch`` blocked, and the engine clones
from the official hub layout (the tiny fixtures exported by ``zipvoice-export``) in a subprocess
where ``import torch`` fails; its audio equals the same engine's in this (torch-present) process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.zipvoice.official_layout import PROMPT_TEXT, official_hub

pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[2]

BLOCK_TORCH = "import sys\nsys.modules['torch'] = None  # import torch -> ImportError\n"

SYNTH = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    args = json.loads(sys.argv[1])
    from api.audio.decode import decode_audio
    from api.engines.base import ReferenceVoice, SynthesisOptions
    from api.engines.zipvoice import ZipVoiceEngine
    from api.settings import Settings
    from api.voices.sources import audio_digest

    s = Settings(
        zipvoice_model_dir=args["models"], vocos_model_dir=args["vocos"], allow_downloads=False,
        cache_dir=args["cache"], num_threads=1, onnx_precision=args["precision"], engine=args["engine"],
    )
    engine = ZipVoiceEngine(s, args["variant"])
    avail = engine.availability()
    assert avail.ok, avail.reason
    samples, rate = decode_audio(Path(args["prompt"]).read_bytes(), max_seconds=60)
    voice = ReferenceVoice(samples, rate, args["prompt_text"], audio_digest(samples, rate), "file",
                           transcript_source="given")
    opts = SynthesisOptions(seed=7, num_steps=3)
    a = next(engine.synthesize(["Hello there, how are you?"], voice, opts))
    b = next(engine.synthesize(["Hello there, how are you?"], voice, opts))
    assert np.array_equal(a.samples, b.samples)
    np.save(args["out"], a.samples)
    print(json.dumps({"runtime": engine.runtime, "rate": a.sample_rate,
                      "torch_loaded": sys.modules.get("torch") is not None}))
    """
)


def _run(code: str, *argv: str, hf_cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if hf_cache is not None:  # an empty HF cache, whatever this machine has
        env["HF_HUB_CACHE"] = str(hf_cache)
    return subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    return official_hub(tmp_path_factory, reference_dir)


def test_blocking_works_and_server_modules_import_without_torch() -> None:
    code = BLOCK_TORCH + textwrap.dedent(
        """
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch was importable")
        import api.app, api.engines.zipvoice, api.zipvoice.pipeline, api.zipvoice.weights
        import api.zipvoice.runtime.ort_numpy, api.zipvoice.runtime.array_frontend
        from api.zipvoice.runtime.array_frontend import numpy_frontend_available
        assert numpy_frontend_available()
        print("ok")
        """
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


@pytest.mark.parametrize(("variant", "precision"), [("zipvoice_distill", "int8"), ("zipvoice", "fp32")])
def test_engine_clones_from_the_official_layout_without_torch(
    hub: Path, reference_dir: Path, tmp_path: Path, variant: str, precision: str
) -> None:
    args = {
        "models": str(hub / "k2-fsa" / "ZipVoice"),
        "vocos": str(hub / "charactr" / "vocos-mel-24khz"),
        "cache": str(tmp_path / "cache"),
        "precision": precision,
        "engine": "auto",
        "variant": variant,
        "prompt": str(reference_dir / "audio" / "prompt.wav"),
        "prompt_text": PROMPT_TEXT,
    }
    free = {**args, "out": str(tmp_path / "free.npy")}
    proc = _run(BLOCK_TORCH + SYNTH, json.dumps(free))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info == {"runtime": f"onnx-{precision} (cpu)", "rate": 24000, "torch_loaded": False}
    audio = np.load(tmp_path / "free.npy")
    assert audio.ndim == 2 and audio.shape[0] == 1 and audio.shape[1] > 2400
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0

    # the same engine with torch importable: the same numbers (one code path, one numpy RNG)
    present = {**args, "out": str(tmp_path / "present.npy")}
    proc = _run(SYNTH, json.dumps(present))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["runtime"] == f"onnx-{precision} (cpu)"
    other = np.load(tmp_path / "present.npy")
    assert other.shape == audio.shape
    np.testing.assert_allclose(other, audio, atol=1e-5)


def test_dialog_variants_say_they_need_torch_when_it_is_missing(hub: Path, tmp_path: Path) -> None:
    code = BLOCK_TORCH + textwrap.dedent(
        """
        import json, sys
        from api.engines.registry import EngineRegistry
        from api.settings import Settings
        s = Settings(zipvoice_model_dir=sys.argv[1], allow_downloads=False, cache_dir=sys.argv[2])
        reg = EngineRegistry(s)
        out = {name: [reg.availability(name).ok, reg.availability(name).reason] for name in reg.names()}
        print(json.dumps(out))
        """
    )
    proc = _run(code, str(hub / "k2-fsa" / "ZipVoice"), str(tmp_path), hf_cache=tmp_path / "hf")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("zipvoice_dialog", "zipvoice_dialog_stereo"):
        ok, reason = out[name]
        assert not ok and "no official ONNX files; needs the torch extra" in reason
    # the mono variants are present (ONNX files) and only lack the vocoder here
    for name in ("zipvoice", "zipvoice_distill"):
        ok, reason = out[name]
        assert not ok and reason.startswith("the Vocos vocoder for ")
        assert "config.yaml" in reason and "text_encoder" not in reason and "extra" not in reason
