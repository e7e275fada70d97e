"""Torch's process-wide settings are the app's: loading an engine leaves ``torch.get_num_threads()``
alone unless the app configured the process (``create_app`` / ``zipvoice-synth``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from api import runtime_env
from api.settings import Settings

torch = pytest.importorskip("torch")


@pytest.fixture
def restore_threads() -> Iterator[int]:
    before = torch.get_num_threads()
    runtime_env.reset_for_tests()
    try:
        yield before
    finally:
        runtime_env.reset_for_tests()
        torch.set_num_threads(before)


def _other(n: int) -> int:
    return 2 if n != 2 else 3


def _engine_settings(reference_dir: Path, threads: int) -> Settings:
    return Settings(
        zipvoice_model_dir=reference_dir / "models",
        vocos_model_dir=reference_dir / "vocos-mel-24khz-tiny",
        allow_downloads=False,
        engine="torch",
        device="cpu",
        num_threads=threads,
    )


def test_loading_an_engine_does_not_touch_torch_threads(reference_dir: Path, restore_threads: int) -> None:
    from api.engines.zipvoice import ZipVoiceEngine

    wanted = _other(restore_threads)
    engine = ZipVoiceEngine(_engine_settings(reference_dir, wanted), "zipvoice_distill")
    engine.load()  # NUM_THREADS is set, but no app configured the process: not the engine's call
    assert torch.get_num_threads() == restore_threads


def test_the_app_setting_applies_on_the_first_torch_load(reference_dir: Path, restore_threads: int) -> None:
    from api.engines.zipvoice import ZipVoiceEngine

    wanted = _other(restore_threads)
    settings = _engine_settings(reference_dir, wanted)
    runtime_env.configure_process(settings)  # torch is imported in this test process: applied now
    assert torch.get_num_threads() == wanted
    torch.set_num_threads(restore_threads)  # someone else changes it afterwards …
    ZipVoiceEngine(settings, "zipvoice_distill").load()
    assert torch.get_num_threads() == restore_threads  # … and a later load does not re-apply it


def test_zero_threads_leaves_torch_default(restore_threads: int) -> None:
    runtime_env.configure_process(Settings(num_threads=0))
    assert torch.get_num_threads() == restore_threads


def test_configure_never_imports_torch_and_the_hook_applies_later() -> None:
    """In a fresh process: create_app leaves torch unimported; the engine hook applies the setting."""
    code = textwrap.dedent(
        """
        import sys
        from api.app import create_app
        from api.settings import Settings
        from api import runtime_env
        create_app(Settings(num_threads=3, preload_models=[], redis_url=None, voice_store_url=None))
        assert "torch" not in sys.modules, "create_app imported torch"
        import torch
        before = torch.get_num_threads()
        runtime_env.torch_imported()  # what an engine calls right after `import torch`
        print(before, torch.get_num_threads())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    _, after = out.stdout.split()
    assert int(after) == 3
