"""Console scripts: ``zipvoice-server`` (serve), ``zipvoice-synth`` (offline synthesis), ``zipvoice-export``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType


def serve(argv: list[str] | None = None) -> None:
    """Start the HTTP server."""
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    settings = Settings()
    parser = argparse.ArgumentParser(prog="zipvoice-server", description="OpenAI-compatible speech server")
    parser.add_argument("--host", default=settings.host, help=f"bind address (default {settings.host})")
    parser.add_argument("--port", type=int, default=settings.port, help=f"port (default {settings.port})")
    parser.add_argument("--log-level", default=settings.log_level)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = settings.model_copy(update={"host": args.host, "port": args.port})
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=settings.shutdown_timeout,
    )
    server = uvicorn.Server(config)

    def handle_exit(sig: int, frame: FrameType | None) -> None:
        # SIGTERM/SIGINT: /ready turns 503 at once; uvicorn stops accepting and drains in-flight work.
        # Not uvicorn's own handler: that one re-raises the signal after the drain, so a clean
        # shutdown would end with status 143 instead of 0. A second SIGINT still forces the exit.
        app.state.draining = True
        if server.should_exit and sig == signal.SIGINT:
            server.force_exit = True
        else:
            server.should_exit = True

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    server.run()


if __name__ == "__main__":  # pragma: no cover
    serve(sys.argv[1:])
