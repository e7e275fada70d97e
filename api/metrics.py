"""Prometheus metrics, one registry per app (``app.state.metrics``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "zvs_requests_total", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "zvs_request_seconds",
            "HTTP request latency (until the response ends)",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.speech = Counter(
            "zvs_speech_total", "Speech requests by model and outcome", ["model", "status"], registry=r
        )
        self.ttfa = Histogram(
            "zvs_time_to_first_audio_seconds",
            "Request start to first audio chunk",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rtf = Histogram(
            "zvs_real_time_factor",
            "Synthesis time / audio duration",
            ["model"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20),
            registry=r,
        )
        self.audio_seconds = Counter(
            "zvs_audio_seconds_total", "Seconds of audio produced", ["model"], registry=r
        )
        self.chunks = Counter(
            "zvs_synthesis_chunks_total", "Text chunks synthesized by the engines", ["model"], registry=r
        )
        self.in_flight = Gauge("zvs_synthesis_in_flight", "Syntheses running", registry=r)
        self.producers = Gauge(
            "zvs_synthesis_threads",
            "Streaming synthesis threads running (a dropped stream's thread ends after its current chunk)",
            registry=r,
        )
        self.queue_depth = Gauge("zvs_synthesis_queue_depth", "Requests waiting for a slot", registry=r)
        self.reference_in_flight = Gauge(
            "zvs_reference_in_flight", "Reference clips being prepared (fetch, decode, Whisper)", registry=r
        )
        self.reference_queue_depth = Gauge(
            "zvs_reference_queue_depth", "Requests waiting for a reference-preparation slot", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


# Every label value comes from a closed set, never from the client: otherwise each new value is a
# new time series, kept for the life of the process (unbounded memory, slow /metrics).
UNKNOWN = "unknown"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def model_label(resolve: Callable[[str], str], model: str) -> str:
    """The backend a model name maps to (backends and configured aliases), else ``unknown``."""
    try:
        return resolve(model)
    except Exception:
        return UNKNOWN


def method_label(method: str) -> str:
    return method if method in _METHODS else "other"


def _route_name(scope: Scope, root_path: str) -> str:
    """The matched route's path template (bounded label values: never the raw path)."""
    # Routing records the matched route in the scope. Matching again is the fallback: FastAPI's
    # included routers are pathless route objects, which must not turn every route into one label.
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    mounted = str(scope.get("root_path", ""))
    if mounted != root_path and mounted.startswith(root_path):  # a Mount (static files) took it
        return mounted[len(root_path) :]
    app = scope.get("app")
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", []):
        route_path = getattr(route, "path", None)
        if isinstance(route_path, str) and route.matches(scope)[0] == Match.FULL:
            return route_path
    return "unmatched"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        root_path = str(scope.get("root_path", ""))

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = _route_name(scope, root_path)
            method = method_label(str(scope.get("method", "")))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
