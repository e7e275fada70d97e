"""Ray Serve deployment of the same FastAPI app (optional extra ``ray``; never imported by the default server).

Each replica builds its own app with ``create_app(Settings())`` from its environment (Serve's
``runtime_env.env_vars``), and Serve runs the app's lifespan in the replica, so every replica
loads and warms its backends exactly as ``zipvoice-server`` does. The routes are the app's own:
Serve's FastAPI ingress forwards each HTTP request (streaming bodies, SSE, client disconnects)
to the replica's ASGI app unchanged.

Start it with the checked-in config::

    serve run deploy/ray/serve.yaml            # or: zipvoice-serve-ray [serve.yaml]

or from Python: ``serve.run(build_app({"num_replicas": 2}))``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "ray" / "serve.yaml"


def _build_asgi_app() -> FastAPI:
    """Runs inside each replica (after Serve set the replica context, so X-Replica-Id is its tag)."""
    from api.app import create_app
    from api.settings import Settings

    return create_app(Settings())


@serve.deployment(
    name="zipvoice",
    # defaults only: deploy/ray/serve.yaml (or build_app's args) override every one of these
    num_replicas=1,
    max_ongoing_requests=8,
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=10,
    graceful_shutdown_timeout_s=30,
)
@serve.ingress(_build_asgi_app)
class ZipVoiceServe:
    """One replica: the whole app (all routes, lifespan, limits) behind Serve's HTTP proxy."""


# Options build_app accepts from the config's ``args`` (or a Python dict); anything else is an error.
_OPTIONS = {"num_replicas", "max_ongoing_requests", "ray_actor_options", "autoscaling_config"}


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve's application builder (``import_path: api.serve_ray:build_app``).

    ``args`` may override the deployment options ``num_replicas``, ``autoscaling_config``,
    ``max_ongoing_requests`` and ``ray_actor_options``; the config's ``deployments:`` section is the
    usual place for them.
    """
    args = dict(args or {})
    unknown = set(args) - _OPTIONS
    if unknown:
        raise ValueError(f"unknown build_app args {sorted(unknown)}; allowed: {sorted(_OPTIONS)}")
    deployment: Any = ZipVoiceServe  # a serve.Deployment (the decorators hide it from type checkers)
    if args:
        deployment = deployment.options(**args)
    app: Application = deployment.bind()
    return app


def main(argv: list[str] | None = None) -> None:
    """``zipvoice-serve-ray [CONFIG]``: ``serve run`` on the checked-in config (blocks until Ctrl-C)."""
    from ray.serve.scripts import cli

    argv = list(sys.argv[1:] if argv is None else argv)
    config = argv.pop(0) if argv and not argv[0].startswith("-") else str(DEFAULT_CONFIG)
    cli.main(args=["run", config, *argv], prog_name="zipvoice-serve-ray")


if __name__ == "__main__":
    main()
