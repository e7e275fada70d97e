"""Kokoro's download path: with no offline assets and downloads allowed, the engine fetches the release
files into the cache (atomic, progress bar) and speaks. The 'release' is a local HTTP server serving
the offline model and voices under the release file names."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.engines import assets
from api.engines.base import PresetVoice, SynthesisOptions
from api.engines.kokoro import KokoroEngine
from api.errors import ServiceUnavailableError
from api.settings import Settings


@pytest.fixture()
def release(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    if not assets.offline_kokoro_available():
        pytest.fail("the offline-assets extra is needed to stand in for the release files")
    root = tmp_path / "release"
    root.mkdir()
    shutil.copy(assets.assemble_offline_kokoro(tmp_path / "assembled"), root / assets.KOKORO_MODEL_FILE)
    shutil.copy(assets.offline_kokoro_voices(), root / assets.KOKORO_VOICES_FILE)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()


def test_downloads_release_files_then_speaks(
    release: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, requests = release
    monkeypatch.setattr(assets, "offline_kokoro_available", lambda: False)
    monkeypatch.setattr(assets, "KOKORO_RELEASE", url)
    engine = KokoroEngine(Settings(cache_dir=tmp_path / "cache", allow_downloads=True))
    assert engine.availability().ok
    chunk = next(engine.synthesize(["Downloaded."], PresetVoice("jm_kumo"), SynthesisOptions()))
    assert chunk.samples.shape[1] > 2400
    cached = tmp_path / "cache" / "kokoro"
    assert (cached / assets.KOKORO_MODEL_FILE).is_file() and (cached / assets.KOKORO_VOICES_FILE).is_file()
    assert not list(cached.glob("*.part"))
    assert len([r for r in requests if "kokoro" in r or "voices" in r]) >= 2


def test_no_assets_and_no_downloads_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "offline_kokoro_available", lambda: False)
    engine = KokoroEngine(Settings(cache_dir=tmp_path, allow_downloads=False))
    avail = engine.availability()
    assert not avail.ok and "KOKORO_MODEL_PATH" in (avail.reason or "")
    with pytest.raises(ServiceUnavailableError):
        engine.load()
