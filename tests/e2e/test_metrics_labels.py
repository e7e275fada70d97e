"""Against the real server: 2,000 speech requests with random ``model`` strings (and a few random
methods and paths) add no Prometheus series: ``/metrics`` has as many lines after as before."""

from __future__ import annotations

import random
import string

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server import ServerProcess


def _series_lines(client: httpx.Client) -> list[str]:
    text = client.get("/metrics").text
    return [line.split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]


def test_random_models_add_no_series(server: ServerProcess) -> None:
    rng = random.Random(2000)

    def junk(n: int = 40) -> str:
        return "".join(rng.choices(string.ascii_letters + string.digits + "-_.:/", k=rng.randint(1, n)))

    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    with httpx.Client(base_url=server.base_url, timeout=120, limits=limits) as client:

        def one_round() -> None:
            body = {"model": junk(), "voice": "alloy", "input": "Hi."}
            assert client.post("/v1/audio/speech", json=body).status_code == 404
            method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 10)))
            assert client.request(method, "/v1/models").status_code in (400, 405)
            assert client.get(f"/{junk(12)}/{junk(12)}").status_code in (404, 405, 307)

        one_round()  # the bounded series these kinds of requests legitimately add exist from now on
        _series_lines(client)
        before = _series_lines(client)
        for _ in range(2000):
            body = {"model": junk(), "voice": "alloy", "input": "Hi."}
            assert client.post("/v1/audio/speech", json=body).status_code == 404
        for _ in range(50):
            one_round()
        after = _series_lines(client)
    assert len(after) == len(before), sorted(set(after) - set(before))[:20]
    assert sorted(after) == sorted(before)
    families = text_string_to_metric_families(httpx.get(server.base_url + "/metrics", timeout=120).text)
    models = {s.labels["model"] for f in families for s in f.samples if "model" in s.labels}
    known = {m["id"] for m in httpx.get(server.base_url + "/v1/models", timeout=120).json()["data"]}
    assert models <= known | {"unknown"}, models
