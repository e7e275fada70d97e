"""The default install clones without PyTorch: a venv made by ``uv sync --frozen --no-dev`` alone
(``import torch`` fails there, asserted) runs the server, which fetches the tiny ``zipvoice_distill``
ONNX int8 files and the tiny Vocos from a local hub (``HF_ENDPOINT``), registers a voice and clones
through ``/v1/audio/speech``; the audio equals, within the int8 tolerance, the same request to the
server in the dev venv (torch importable) on the same inputs and seed.

The tiny models' output is not speech: the comparison is numeric.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.server import REPO_ROOT, free_port
from tests.zipvoice.hub_server import local_hub
from tests.zipvoice.official_layout import PROMPT_TEXT, official_hub

pytestmark = pytest.mark.slow
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        if IN_CI:
            pytest.fail("uv is needed for the torch-free venv test under CI")
        pytest.skip("uv not found")
    return uv


@pytest.fixture(scope="module")
def torch_free_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv-default") / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    proc = subprocess.run(
        [_uv(), "sync", "--frozen", "--no-dev"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    python = venv / "bin" / "python"
    check = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, env=env)
    assert check.returncode != 0 and "No module named 'torch'" in check.stderr
    return python


class _Server:
    def __init__(self, python: Path, env: dict[str, str], tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"server-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(python), "-m", "api.cli", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO_ROOT,
            env={**base, **env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="module")
def hub_url(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Iterator[str]:
    pytest.importorskip("onnx")  # the dev venv exports the tiny checkpoints (zipvoice-export)
    with local_hub(official_hub(tmp_path_factory, reference_dir)) as (url, _):
        yield url


def _clone(python: Path, hub: str, tmp: Path, reference_dir: Path) -> tuple[np.ndarray, str]:
    env = {
        "HF_ENDPOINT": hub,
        "HF_HUB_CACHE": str(tmp / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "ALLOW_DOWNLOADS": "true",
        "ENGINE": "auto",
        "ONNX_PRECISION": "int8",
        "PRELOAD_MODELS": "[]",
        "NUM_THREADS": "1",
        "CACHE_DIR": str(tmp / "cache"),
        "VOICES_DIR": str(tmp / "voices"),
        "DEVICE": "cpu",
    }
    server = _Server(python, env, tmp)
    try:
        server.wait_ready()
        clip = base64.b64encode((reference_dir / "audio" / "prompt.wav").read_bytes()).decode()
        with httpx.Client(base_url=server.url, timeout=300) as client:
            reg = client.post(
                "/v1/audio/voices", json={"name": "fox", "audio": f"base64+{clip}", "transcript": PROMPT_TEXT}
            )
            assert reg.status_code == 201, reg.text
            reply = client.post(
                "/v1/audio/speech",
                json={
                    "model": "zipvoice_distill",
                    "input": "Hello there. How are you today?",
                    "voice": "fox",
                    "response_format": "pcm",
                    "seed": 11,
                    "num_steps": 3,
                },
            )
            assert reply.status_code == 200, reply.text + server.log()
            models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
        pcm = np.frombuffer(reply.content, dtype="<i2").astype(np.float32) / 32768.0
        return pcm, str(models["zipvoice_distill"].get("runtime"))
    finally:
        server.stop()


def test_default_install_clones_without_torch(
    torch_free_python: Path, hub_url: str, tmp_path: Path, reference_dir: Path
) -> None:
    import sys

    (tmp_path / "free").mkdir()
    (tmp_path / "dev").mkdir()
    free, free_runtime = _clone(torch_free_python, hub_url, tmp_path / "free", reference_dir)
    dev, dev_runtime = _clone(Path(sys.executable), hub_url, tmp_path / "dev", reference_dir)
    assert free_runtime == dev_runtime == "onnx-int8 (cpu)"
    assert free.size > 2400 and np.isfinite(free).all()
    assert free.shape == dev.shape
    # int8 tolerance: same graphs, same numpy RNG; only float/int16 rounding may differ
    assert np.max(np.abs(free - dev)) <= 3 / 32768
