from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server with its default configuration (Kokoro from the offline assets)."""
    tmp: Path = tmp_path_factory.mktemp("server")
    proc = ServerProcess({"MAX_CONCURRENCY": "2", "MAX_QUEUE": "16"}, tmp)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
