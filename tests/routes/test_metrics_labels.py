"""Metric labels come from closed sets: client-chosen model names, methods and paths never create
new time series; ``/metrics`` still renders."""

from __future__ import annotations

import random
import string

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.metrics import UNKNOWN, method_label, model_label
from api.settings import Settings


def _series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _label_values(text: str, label: str) -> set[str]:
    return {value for _, labels in _series(text) for key, value in labels if key == label}


def test_model_label_is_a_backend_or_unknown() -> None:
    settings = Settings(allow_downloads=False)
    app = create_app(settings)
    resolve = app.state.services.engines.resolve_model
    assert model_label(resolve, "kokoro") == "kokoro"
    assert model_label(resolve, "tts-1") == settings.model_aliases["tts-1"]
    assert model_label(resolve, "x" * 39 + "💥") == UNKNOWN
    assert method_label("GET") == "GET" and method_label("BREW") == "other"


def test_random_models_methods_and_paths_add_no_series(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(allow_downloads=False, voices_dir=tmp_path / "voices", preload_models=[])
    app = create_app(settings)
    rng = random.Random(7)

    def junk() -> str:
        return "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(1, 40)))

    body = {"model": "warm-up", "voice": "alloy", "input": "Hi."}

    def burst(client: TestClient, n: int) -> None:
        for _ in range(n):
            body["model"] = junk()
            assert client.post("/v1/audio/speech", json=body).status_code == 404
            assert client.request(junk().upper(), "/v1/models").status_code in (400, 404, 405)
            assert client.get("/" + junk() + "/" + junk()).status_code in (401, 404, 307)

    with TestClient(app) as client:
        burst(client, 1)  # one of each first: the bounded labels they legitimately add exist now
        client.get("/metrics")
        before = client.get("/metrics").text
        burst(client, 150)
        after = client.get("/metrics").text
    assert _series(after) == _series(before)  # counters moved, no series appeared
    assert _label_values(after, "model") <= {*app.state.services.engines.names(), UNKNOWN}
    assert _label_values(after, "method") <= {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
        "other",
    }
