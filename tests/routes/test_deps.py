"""The route accessors: ``ServicesDep`` is the app's one ``Services``; ``CallerDep`` is the namespace
and admin flag the API-key middleware set (default namespace without keys)."""

from __future__ import annotations

import ast
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import DEFAULT_NAMESPACE, APIKeyMiddleware, owner_for_key
from api.routes.deps import Caller, CallerDep, ServicesDep
from api.services import Services
from api.settings import Settings

ROUTES = Path(__file__).resolve().parents[2] / "api" / "routes"


def _probe_app(keys: list[str], admin_keys: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/probe")
    async def probe(caller: CallerDep) -> dict[str, object]:
        return {"owner": caller.owner, "is_admin": caller.is_admin}

    app.add_middleware(APIKeyMiddleware, keys=keys, admin_keys=admin_keys)
    return app


def test_caller_without_keys_is_the_default_namespace() -> None:
    with TestClient(_probe_app([], [])) as client:
        assert client.get("/v1/probe").json() == {"owner": DEFAULT_NAMESPACE, "is_admin": False}


def test_caller_is_the_key_namespace_and_admin_flag() -> None:
    with TestClient(_probe_app(["sk-user"], ["sk-admin"])) as client:
        user = client.get("/v1/probe", headers={"Authorization": "Bearer sk-user"}).json()
        admin = client.get("/v1/probe", headers={"Authorization": "Bearer sk-admin"}).json()
    assert user == {"owner": owner_for_key("sk-user"), "is_admin": False}
    assert admin == {"owner": owner_for_key("sk-admin"), "is_admin": True}
    assert user["owner"] != admin["owner"] != DEFAULT_NAMESPACE
    assert Caller("x", False) == Caller("x", False)  # a value object


def test_services_dep_is_the_apps_services(tmp_path: Path) -> None:
    settings = Settings(
        voices_dir=tmp_path / "voices", cache_dir=tmp_path / "cache", preload_models=[], redis_url=None
    )
    app = create_app(settings)
    seen: list[Services] = []

    @app.get("/v1/probe-services")
    async def probe(services: ServicesDep) -> dict[str, str]:
        seen.append(services)
        return {"replica": services.replica_id}

    with TestClient(app) as client:
        r = client.get("/v1/probe-services")
        assert r.status_code == 200
        assert r.json()["replica"] == r.headers["x-replica-id"]
        client.get("/v1/probe-services")
    assert len(seen) == 2 and seen[0] is seen[1] is app.state.services


def _state_reads(path: Path) -> list[str]:
    """``<x>.app.state`` / ``<x>.state.<attr>`` reads in a module, as 'line: source'."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "state":
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Name) and node.id == "state":
            found.append(f"{node.lineno}: state")
    return found


def test_routes_read_no_untyped_state() -> None:
    """Routes take ``ServicesDep``/``CallerDep``; only the accessors themselves look at ``state``."""
    modules = sorted(p for p in ROUTES.glob("*.py") if p.name != "deps.py")
    assert {p.name for p in modules} >= {"models.py", "voices.py", "analysis.py", "ops.py", "usage.py"}
    offenders = {p.name: reads for p in modules if (reads := _state_reads(p))}
    assert not offenders, f"untyped state reads in api/routes/: {offenders}"


def test_the_state_scan_sees_a_state_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f(request):\n    return request.app.state.engines\n")
    assert _state_reads(bad) == ["2: request.app.state"]


def test_accessors_run_on_the_event_loop() -> None:
    """FastAPI runs a plain ``def`` dependency in a worker thread (a hop per request); the accessors
    only read attributes, so they are coroutines and run inline."""
    import inspect

    from api.routes import deps

    assert inspect.iscoroutinefunction(deps.services)
    assert inspect.iscoroutinefunction(deps.caller)
