"""Process-wide runtime settings (torch's CPU thread count and denormal flushing), set by the app.

Torch's thread count and denormal mode are global to the process, so no engine changes them on
its own: the app (``create_app``, and the ``zipvoice-synth`` CLI) records its choice once with
:func:`configure_process`. The default install has no torch, and a Kokoro/ONNX-only server never
imports it, so this module never imports torch itself:

* if torch is already imported when the app configures, the settings are applied at once;
* otherwise they are applied by :func:`torch_imported`, which an engine calls right after its own
  ``import torch`` (the one hook; it applies the app's recorded choice once and is a no-op when no
  app configured the process, e.g. a library user building an engine by hand).

What is applied: ``torch.set_num_threads(NUM_THREADS)`` when ``NUM_THREADS`` > 0 (0 leaves torch's
default, one thread per core), and ``torch.set_flush_denormal(True)``: denormal floats make CPU
matmuls several times slower on random-ish activations (one decoder step measured 5-7 s → 1.9 s)
and flushing them changes nothing audible; it does not affect GPU kernels.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from api.settings import Settings


@dataclass(frozen=True)
class TorchProcessSettings:
    """What the app wants of torch, process-wide."""

    num_threads: int  # 0: torch's default
    flush_denormal: bool = True


_lock = threading.Lock()
_wanted: TorchProcessSettings | None = None
_applied = False


def configure_process(settings: Settings) -> TorchProcessSettings:
    """Record the app's process-wide torch settings; apply them now if torch is already imported."""
    global _wanted, _applied
    wanted = TorchProcessSettings(num_threads=settings.num_threads)
    with _lock:
        _wanted = wanted
        _applied = False
    if sys.modules.get("torch") is not None:
        torch_imported()
    return wanted


def torch_imported() -> None:
    """Hook for engines, called right after ``import torch``: apply the app's settings (once)."""
    global _applied
    with _lock:
        if _wanted is None or _applied or sys.modules.get("torch") is None:
            return
        import torch

        if _wanted.num_threads > 0:
            torch.set_num_threads(_wanted.num_threads)
        if _wanted.flush_denormal:
            torch.set_flush_denormal(True)
        _applied = True


def reset_for_tests() -> None:
    """Forget the recorded settings (tests only; torch's own state is left as it is)."""
    global _wanted, _applied
    with _lock:
        _wanted = None
        _applied = False
