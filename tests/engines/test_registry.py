"""The engine registry: one static table, lazy engine modules, and no re-probing once loaded."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.engines.base import Availability
from api.engines.registry import ENGINES, EngineRegistry, EngineSpec
from api.engines.zipvoice import VARIANTS
from api.errors import ServiceUnavailableError
from api.settings import Settings
from tests.synthesis.fakes import FakeEngine


@dataclass
class CountingEngine(FakeEngine):
    probes: int = 0

    def availability(self) -> Availability:
        self.probes += 1
        return super().availability()


def _registry(engine: FakeEngine, tmp_path: Path) -> EngineRegistry:
    settings = Settings(cache_dir=tmp_path)
    return EngineRegistry(settings, {engine.name: EngineSpec(engine.name, lambda _s: engine, "fake")})


def test_the_table_lists_every_backend_once() -> None:
    assert list(ENGINES) == ["kokoro", *VARIANTS]
    assert all(name == spec.name and spec.description for name, spec in ENGINES.items())


def test_each_factory_builds_its_engine(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    for name, spec in ENGINES.items():
        assert spec.factory(settings).name == name  # type: ignore[attr-defined]


def test_importing_the_registry_imports_no_engine() -> None:
    code = (
        "import sys, api.engines.registry as r; "
        "print(sorted(m for m in ('api.engines.kokoro', 'api.engines.zipvoice') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_loaded_probes_availability_once_then_never_again(tmp_path: Path) -> None:
    engine = CountingEngine("zipvoice")
    registry = _registry(engine, tmp_path)
    for _ in range(100):
        assert registry.loaded("zipvoice") is engine
    assert engine.probes == 1
    assert engine.loads == 1


def test_an_unavailable_engine_is_probed_on_every_call_until_it_loads(tmp_path: Path) -> None:
    engine = CountingEngine("zipvoice", available=False)
    registry = _registry(engine, tmp_path)
    for _ in range(3):
        with pytest.raises(ServiceUnavailableError, match="switched off"):
            registry.loaded("zipvoice")
    assert engine.probes == 3 and engine.loads == 0
    engine.available = True  # e.g. the weights were put in place
    for _ in range(10):
        registry.loaded("zipvoice")
    assert engine.probes == 4 and engine.loads == 1


def test_a_failed_load_is_retried(tmp_path: Path) -> None:
    @dataclass
    class FailingOnce(CountingEngine):
        def load(self) -> None:
            super().load()
            if self.loads == 1:
                raise ServiceUnavailableError("download failed")

    engine = FailingOnce("zipvoice")
    registry = _registry(engine, tmp_path)
    with pytest.raises(ServiceUnavailableError, match="download failed"):
        registry.loaded("zipvoice")
    assert registry.loaded("zipvoice") is engine
    assert registry.loaded("zipvoice") is engine
    assert engine.loads == 2 and engine.probes == 2


def test_concurrent_first_calls_all_get_the_engine(tmp_path: Path) -> None:
    engine = CountingEngine("zipvoice", delay=0.0)
    registry = _registry(engine, tmp_path)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(registry.loaded("zipvoice"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [engine] * 8
    for _ in range(100):
        registry.loaded("zipvoice")
    assert engine.probes <= 8  # at most the racing first calls; none after
