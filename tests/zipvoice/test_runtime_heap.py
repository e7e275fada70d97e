"""``api.zipvoice.runtime.heap``: free C-heap pages go back to the system after model loading.

The full-size effect (433 -> 325 MB resident for the loaded int8 engine) is measured by
``scripts/bench/peers.py``; here: the call releases freed heap pages (glibc), and both loaders
make it once their temporaries are gone.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from api.zipvoice.runtime import array_frontend, heap, ort_numpy

REPO = Path(__file__).resolve().parents[2]
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_freed_heap_pages_are_returned() -> None:
    # 160 MB of 64 KB blocks (below glibc's mmap threshold: they live in the heap); the last block
    # stays alive, so the freed ones sit below the heap top and free() cannot shrink the heap
    code = textwrap.dedent(
        """
        from api.zipvoice.runtime.heap import release_free_heap

        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024

        blocks = [bytes(64 * 1024 - 64) for _ in range(2560)]
        keep = blocks[-1]
        del blocks
        before = rss()
        assert release_free_heap()
        print(before, rss())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    before, after = map(float, out.stdout.split())
    assert before - after > 50, (before, after)


def test_release_says_whether_it_ran() -> None:
    assert heap.release_free_heap() is (heap._libc() is not None)
    if GLIBC:
        assert heap._libc() is not None


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(ort_numpy, "release_free_heap", lambda: seen.append("sessions") or True)
    monkeypatch.setattr(array_frontend, "release_free_heap", lambda: seen.append("vocos") or True)
    return seen


def test_loaders_release_after_loading(
    calls: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    class Session:
        def __init__(self, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
            self.inputs, self.outputs = inputs, outputs

        def get_inputs(self) -> list[object]:
            return [type("Arg", (), {"name": n, "shape": [1, None, 100]})() for n in self.inputs]

        def get_outputs(self) -> list[object]:
            return [type("Arg", (), {"name": n})() for n in self.outputs]

        def get_modelmeta(self) -> object:
            return type("Meta", (), {"custom_metadata_map": {"feat_dim": "100"}})()

        def get_providers(self) -> list[str]:
            return ["CPUExecutionProvider"]

    def make_session(path: Path, *_: object) -> Session:
        assert calls == [], "released before both sessions were built"
        if path.name.startswith(ort_numpy.TEXT_ENCODER):
            return Session(ort_numpy.TEXT_INPUTS, ort_numpy.TEXT_OUTPUTS)
        return Session(ort_numpy.FM_INPUTS, ort_numpy.FM_OUTPUTS)

    for name in ort_numpy.onnx_file_names("int8"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(ort_numpy, "make_session", make_session)
    ort_numpy.load_onnx_dir(tmp_path, "int8", num_threads=1)
    assert calls == ["sessions"]

    class Vocos:
        @classmethod
        def from_dir(cls, path: Path) -> Vocos:
            assert calls == ["sessions"], "released before the vocoder was built"
            return cls()

    real_module = array_frontend._module

    def module(name: str) -> object:
        if name == "api.zipvoice.vocos_np":
            return type("M", (), {"NumpyVocos": Vocos})
        return real_module(name)

    monkeypatch.setattr(array_frontend, "_module", module)
    _, vocoder, kind = array_frontend.load_array_frontend(tmp_path)
    assert kind == "numpy" and isinstance(vocoder, Vocos)
    assert calls == ["sessions", "vocos"]
