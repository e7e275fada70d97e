"""The web player: static files from ``WEB_DIR`` served at ``/web``; ``/`` redirects there."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.settings import Settings


def mount_web(app: FastAPI, settings: Settings) -> None:
    web_dir = settings.web_dir
    if web_dir is None or not (web_dir / "index.html").is_file():
        return

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/web/")

    app.mount("/web", StaticFiles(directory=web_dir, html=True), name="web")
