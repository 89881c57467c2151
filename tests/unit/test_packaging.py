"""Static checks of what cannot run here (no container engine): the Containerfile and compose.yaml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_containerfile_copies_existing_paths() -> None:
    text = (ROOT / "Containerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Containerfile copies missing {src}"
    assert re.search(r"^USER (?!root)", text, re.M), "the image must not run as root"


def test_compose_runs_two_replicas_behind_a_load_balancer() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"gateway-1", "gateway-2", "lb", "postgres", "redis", "ollama", "ollama-pull"} <= set(services)
    for name in ("gateway-1", "gateway-2"):
        g = services[name]
        for key in ("DATABASE_URL", "REDIS_URL", "SMR_ADMIN_KEY", "GOOGLE_API_KEY", "OLLAMA_BASE_URL"):
            assert key in g["environment"], (name, key)
        assert g["environment"]["REDIS_URL"].startswith("redis://redis:6379")
        assert "@postgres:5432/" in g["environment"]["DATABASE_URL"]
        assert g["environment"]["OLLAMA_BASE_URL"] == "http://ollama:11434"
        assert g["depends_on"]["ollama-pull"]["condition"] == "service_completed_successfully"
        assert "/health" in " ".join(g["healthcheck"]["test"]) and g["command"][-1] == "8080"
        assert g["image"] == "smart-model-router:latest"
    for name in ("postgres", "redis", "ollama", "lb"):
        assert services[name]["healthcheck"]["test"], name
    assert "redis-stack" in services["redis"]["image"], "the semantic cache needs the Redis query engine"
    assert services["ollama-pull"]["entrypoint"] == ["ollama", "pull", "granite4:350m"]
    assert services["ollama-pull"]["environment"]["OLLAMA_HOST"] == "http://ollama:11434"
    assert {"ollama", "pg", "redis"} <= set(compose["volumes"])
    lb = services["lb"]
    assert lb["ports"] == ["8080:8080"]
    mount = lb["volumes"][0].split(":")
    conf = (ROOT / mount[0]).read_text()
    assert "server gateway-1:8080" in conf and "server gateway-2:8080" in conf and "listen 8080" in conf
    assert "proxy_buffering off" in conf  # SSE passes through unbuffered


def k8s(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / name).read_text()) if d]


def test_kubernetes_manifests_fit_together() -> None:
    folder = ROOT / "deploy" / "kubernetes"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in folder.glob("*.yaml")
                                                        if p.name != "kustomization.yaml")
    (deploy,) = k8s("deployment.yaml")
    (service,) = k8s("service.yaml")
    (hpa,) = k8s("hpa.yaml")
    (config,) = k8s("configmap.yaml")
    (secret,) = k8s("secret.yaml")
    externals = {d["metadata"]["name"]: d for d in k8s("external-services.yaml")}
    spec = deploy["spec"]
    assert spec["replicas"] >= 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"] == labels and service["spec"]["selector"] == labels
    (c,) = spec["template"]["spec"]["containers"]
    assert c["image"] == yaml.safe_load((ROOT / "compose.yaml").read_text())["x-gateway"]["image"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port["http"] == 8080 and c["args"][c["args"].index("--port") + 1] == "8080"
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert c["envFrom"][0]["secretRef"]["name"] == secret["metadata"]["name"]
    for key in ("SMR_ADMIN_KEY", "GOOGLE_API_KEY", "DATABASE_URL", "REDIS_URL"):
        assert key in secret["stringData"]
    assert "@smr-postgres:5432/" in secret["stringData"]["DATABASE_URL"]
    assert secret["stringData"]["REDIS_URL"].startswith("redis://smr-redis:6379")
    assert {"smr-postgres", "smr-redis"} <= set(externals)
    assert all(e["spec"]["type"] == "ExternalName" for e in externals.values())
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["OLLAMA_BASE_URL"] == "http://smr-ollama:11434"
    mount = c["volumeMounts"][0]
    volume = spec["template"]["spec"]["volumes"][0]
    assert volume["name"] == mount["name"] and volume["configMap"]["name"] == config["metadata"]["name"]
    config_path = c["args"][c["args"].index("--config") + 1]
    assert config_path == mount["mountPath"] + "/config.toml"
    assert tomllib.loads(config["data"]["config.toml"]) == tomllib.loads((ROOT / "config.toml").read_text())
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deploy["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert spec["template"]["spec"]["securityContext"]["runAsUser"] == 10001
    assert "--uid 10001" in (ROOT / "Containerfile").read_text()


def test_pyproject_pins_torch_and_exposes_smr() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = [d for d in meta["dependencies"] if d.startswith("torch")]
    assert torch == ["torch==2.13.0"]
    assert "torch==2.13.0" in (ROOT / "Containerfile").read_text()
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()
    assert meta["scripts"]["smr"] == "gateway.cli:main"


def test_router_core_never_imports_the_web_stack() -> None:
    banned = re.compile(r"^\s*(from|import)\s+(litestar|redis|psycopg|gateway|uvicorn|aiohttp)\b", re.M)
    for f in (ROOT / "router_core").rglob("*.py"):
        assert not banned.search(f.read_text()), f"{f} imports a web/storage module"
