"""Console scripts: ``zipvoice-server`` (serve), ``zipvoice-synth`` (offline synthesis), ``zipvoice-export``."""

from __future__ import annotations

import argparse
import logging
import sys


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
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=30)


if __name__ == "__main__":  # pragma: no cover
    serve(sys.argv[1:])
