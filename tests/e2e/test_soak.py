"""Short soak against the real server (``scripts/soak.py``, ~60 s): several clients send a fixed
count of mixed requests (valid Kokoro speech, bad inputs, the decode-bomb corpus). No answer may be a
5xx, ``/health`` must answer every probe, and after the warm-up the server's RSS must not keep
growing (a least-squares slope under a generous bound: a leak of 1 MiB per request is 1000)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import REPO_ROOT, ServerProcess

sys.path.insert(0, str(REPO_ROOT / "scripts"))

from soak import corpus_files, run_soak, slope_per_1000

REQUESTS = 300
SPEECH_WEIGHT = 1  # of 13: ~23 Kokoro syntheses; the rest is cheap, so the run stays near a minute
CLIENTS = 4
MAX_SLOPE_MIB_PER_1000 = 300.0


@pytest.fixture(scope="module")
def soak_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp: Path = tmp_path_factory.mktemp("soak")
    proc = ServerProcess({"MAX_CONCURRENCY": "2", "MAX_QUEUE": "16", "LOG_LEVEL": "warning"}, tmp)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def test_slope_is_least_squares() -> None:
    assert slope_per_1000([(0, 100.0), (100, 101.0), (200, 102.0)]) == pytest.approx(10.0)
    assert slope_per_1000([(0, 100.0), (100, 100.0), (200, 100.0), (300, 100.0)]) == 0.0
    assert slope_per_1000([(5, 1.0), (5, 2.0)]) is None  # no spread in x: no slope


def test_short_soak(soak_server: ServerProcess) -> None:
    result = run_soak(
        soak_server.base_url,
        pid=soak_server.proc.pid,
        requests=REQUESTS,
        clients=CLIENTS,
        warmup=0.5,
        timeout=300.0,
        seed=12,
        speech_weight=SPEECH_WEIGHT,
    )
    summary = {k: v for k, v in vars(result).items() if k != "rss_samples"}
    print(summary)
    assert result.requests == REQUESTS, summary
    assert result.server_errors == 0 and result.transport_errors == 0, summary
    assert result.status_counts.get("200", 0) > 0, summary  # valid speech did get through
    assert set(result.by_kind.get("bad_model", {"404": 1})) == {"404"}, summary  # unknown models: 404
    assert result.health_probes >= 10 and result.health_failures == 0, summary
    if corpus_files():
        assert result.corpus_files > 0
    assert result.rss_slope_mib_per_1000 is not None, summary
    assert result.rss_slope_mib_per_1000 < MAX_SLOPE_MIB_PER_1000, summary
    assert soak_server.proc.poll() is None  # still up
