"""Availability probes stay cheap: without an NVIDIA driver, asking for CUDA does not import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from api.zipvoice.runtime import select


def test_no_driver_means_no_cuda_without_importing_torch() -> None:
    if select.nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver: torch is the one to ask")
    code = (
        "import sys; from api.zipvoice.runtime import select as s; "
        "print(s.cuda_available(), 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["False", "False"]


def test_driver_check_is_consulted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select, "nvidia_driver_present", lambda: False)
    monkeypatch.setattr(select, "has_module", lambda name: True)
    assert select.cuda_available() is False
