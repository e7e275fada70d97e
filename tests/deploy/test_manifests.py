"""Static checks of deploy/: the Serve config (validated by Ray Serve's own schema) and the KubeRay
RayService manifest (parsed; fields and types per KubeRay's ray.io/v1 RayService CRD).

Every environment variable named anywhere is a real setting (``Settings.model_fields``) or a known
Ray / NVIDIA / device variable, so a renamed setting cannot silently drop out of a deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from api.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SERVE_YAML = REPO / "deploy/ray/serve.yaml"
RAYSERVICE = REPO / "deploy/k8s/rayservice.yaml"
SECRET = "zipvoice-shared"
SHARED_KEYS = {"VOICE_STORE_URL", "REDIS_URL", "API_KEYS"}
OTHER_ENV = {"NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "RAY_ADDRESS", "HF_HOME"}

# KubeRay ray.io/v1 (RayService / RayClusterSpec / HeadGroupSpec / WorkerGroupSpec): the fields
# this manifest may use, with their types. An unknown key is a typo the operator would drop.
RAYSERVICE_SPEC = {
    "serveConfigV2": str,
    "rayClusterConfig": dict,
    "upgradeStrategy": dict,
    "serviceUnhealthySecondThreshold": int,
    "deploymentUnhealthySecondThreshold": int,
    "excludeHeadPodFromServeSvc": bool,
    "serveService": dict,
}
RAYCLUSTER_SPEC = {
    "rayVersion": str,
    "enableInTreeAutoscaling": bool,
    "autoscalerOptions": dict,
    "headGroupSpec": dict,
    "workerGroupSpecs": list,
    "headServiceAnnotations": dict,
    "suspend": bool,
}
HEAD_GROUP = {
    "serviceType": str,
    "rayStartParams": dict,
    "template": dict,
    "headService": dict,
    "enableIngress": bool,
}
WORKER_GROUP = {
    "groupName": str,
    "replicas": int,
    "minReplicas": int,
    "maxReplicas": int,
    "rayStartParams": dict,
    "template": dict,
    "scaleStrategy": dict,
    "suspend": bool,
    "numOfHosts": int,
}


def _docs(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in docs)
    return docs


def _check_fields(obj: dict[str, Any], allowed: dict[str, type], where: str) -> None:
    unknown = set(obj) - set(allowed)
    assert not unknown, f"{where}: fields not in the KubeRay v1 CRD: {sorted(unknown)}"
    for key, value in obj.items():
        assert isinstance(value, allowed[key]), (
            f"{where}.{key}: {type(value).__name__}, want {allowed[key].__name__}"
        )


def _rayservice() -> dict[str, Any]:
    (svc,) = [d for d in _docs(RAYSERVICE) if d["kind"] == "RayService"]
    return svc


def _known_env() -> set[str]:
    return {name.upper() for name in Settings.model_fields} | OTHER_ENV


def _serve_schema(cfg: dict[str, Any]) -> Any:
    schema = pytest.importorskip("ray.serve.schema", reason="the `ray` extra is not installed")
    return (
        schema.ServeDeploySchema.model_validate(cfg)
        if hasattr(schema.ServeDeploySchema, "model_validate")
        else schema.ServeDeploySchema.parse_obj(cfg)
    )


# ------------------------------------------------------------------------------------ serve.yaml
def _check_serve_config(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    _serve_schema(cfg)  # Ray Serve's own validation of the whole file
    (app,) = cfg["applications"]
    assert app["import_path"] == "api.serve_ray:build_app", where
    assert app["route_prefix"] == "/"
    for name, value in app["runtime_env"]["env_vars"].items():
        assert name in _known_env(), f"{where}: {name} is not a setting"
        assert isinstance(value, str), f"{where}: env var {name} must be a string"
    (dep,) = app["deployments"]
    assert dep["name"] == "zipvoice"
    assert ("num_replicas" in dep) != ("autoscaling_config" in dep), (
        "one of num_replicas / autoscaling_config"
    )
    assert isinstance(dep["max_ongoing_requests"], int) and dep["max_ongoing_requests"] >= 1
    opts = dep["ray_actor_options"]
    assert isinstance(opts["num_cpus"], (int, float)) and opts["num_cpus"] > 0
    assert isinstance(opts["num_gpus"], (int, float)) and opts["num_gpus"] >= 0
    return dep


def test_serve_yaml_validates() -> None:
    cfg = yaml.safe_load(SERVE_YAML.read_text())
    dep = _check_serve_config(cfg, "serve.yaml")
    assert dep["num_replicas"] >= 1 and dep["ray_actor_options"]["num_gpus"] == 0
    text = SERVE_YAML.read_text()
    assert "autoscaling_config:" in text and "num_gpus: 0.5" in text  # the documented alternatives
    assert cfg["http_options"]["port"] == 8000


def test_build_app_matches_the_config() -> None:
    serve_ray = pytest.importorskip("api.serve_ray", reason="the `ray` extra is not installed")
    dep = yaml.safe_load(SERVE_YAML.read_text())["applications"][0]["deployments"][0]
    app = serve_ray.build_app({"num_replicas": 3, "max_ongoing_requests": 5})
    assert app is not None
    assert serve_ray.ZipVoiceServe.name == dep["name"]
    with pytest.raises(ValueError, match="unknown build_app args"):
        serve_ray.build_app({"replicas": 2})


# ------------------------------------------------------------------------------------ RayService
def test_rayservice_structure() -> None:
    svc = _rayservice()
    assert svc["apiVersion"] == "ray.io/v1"
    assert svc["metadata"]["name"]
    spec = svc["spec"]
    _check_fields(spec, RAYSERVICE_SPEC, "spec")
    cluster = spec["rayClusterConfig"]
    _check_fields(cluster, RAYCLUSTER_SPEC, "rayClusterConfig")
    head = cluster["headGroupSpec"]
    _check_fields(head, HEAD_GROUP, "headGroupSpec")
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), (
        "rayStartParams values are strings"
    )
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for name, group in groups.items():
        _check_fields(group, WORKER_GROUP, f"workerGroupSpecs[{name}]")
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())

    # the Serve config inside is a valid Serve config of this app
    dep = _check_serve_config(yaml.safe_load(spec["serveConfigV2"]), "serveConfigV2")
    assert 0 < dep["ray_actor_options"]["num_gpus"] < 1  # fractional GPU replicas


def _containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    containers = template["spec"]["containers"]
    assert containers and all(c["image"] for c in containers)
    return containers


def test_gpu_group_requests_nvidia_gpus_and_cpu_group_none() -> None:
    groups = {g["groupName"]: g for g in _rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    (gpu,) = _containers(groups["gpu"]["template"])
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert gpu["resources"]["requests"]["nvidia.com/gpu"] == gpu["resources"]["limits"]["nvidia.com/gpu"]
    (cpu,) = _containers(groups["cpu"]["template"])
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})


def test_workers_ready_on_slash_ready_via_the_serve_port() -> None:
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    serve_port = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])["http_options"]["port"]
    for group in cluster["workerGroupSpecs"]:
        (c,) = _containers(group["template"])
        probe = c["readinessProbe"]["httpGet"]
        assert probe["path"] == "/ready"
        assert probe["port"] == serve_port
        assert {"containerPort": serve_port, "name": "serve"} in c["ports"]


def test_every_pod_reads_the_shared_secret_and_env_names_are_settings() -> None:
    cluster = _rayservice()["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for template in templates:
        for c in _containers(template):
            refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
            assert refs == [SECRET], c["name"]
            for e in c.get("env", []):
                assert e["name"] in _known_env(), f"{e['name']} is not a setting"
    (secret,) = [d for d in _docs(RAYSERVICE) if d["kind"] == "Secret"]
    assert secret["metadata"]["name"] == SECRET
    assert set(secret["stringData"]) == SHARED_KEYS
    assert _known_env() >= SHARED_KEYS
