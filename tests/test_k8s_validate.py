"""``llmship k8s validate`` on manifests: every error names the file, the object and the
field; exit 1 when something is invalid, 2 on bad input. Real schemas: kubernetes-validate
(Kubernetes 1.35.0) and the shipped CRD schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from _cli import Run
from llmship.k8s.validate import KUBERNETES_VERSION, validate_objects

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: x-gateway
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: x}}}}
  template:
    metadata: {{labels: {{app: x}}}}
    spec:
      containers:
        - name: gateway
          {image_key}: llmship:0.1.0
"""

ROLLOUT = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: chat
spec:
  replicas: 4
  selector: {matchLabels: {app: chat}}
  template:
    metadata: {labels: {app: chat}}
    spec:
      containers: [{name: model, image: "llmship:0.1.0"}]
  strategy:
    canary:
      steps: [{setWeight: %s}, {pause: {duration: 60s}}]
"""

SERVICE_MONITOR = """\
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: gw}
spec:
  selector: {matchLabels: {app: x}}
  endpoints: [{port: http, path: /metrics}]
"""


def _write(folder: Path, **manifests: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in manifests.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "good",
        gateway=DEPLOYMENT.format(replicas=2, image_key="image"),
        rollout=ROLLOUT % 20,
        monitor=SERVICE_MONITOR,
    )


def test_valid_manifests_pass_with_a_count(run: Run, good: Path) -> None:
    result = run("k8s", "validate", str(good))
    assert f"3 objects valid (Kubernetes {KUBERNETES_VERSION})" in result.output


def test_a_wrong_type_names_file_object_and_field(run: Run, tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", gateway=DEPLOYMENT.format(replicas="two", image_key="image"))
    result = run("k8s", "validate", str(folder), code=1)
    assert (
        f"{folder / 'gateway.yaml'}: Deployment/x-gateway: spec.replicas: 'two' is not of type"
        in result.output
    )


def test_an_unknown_field_is_named_with_its_path(run: Run, tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", gateway=DEPLOYMENT.format(replicas=2, image_key="imagee"))
    result = run("k8s", "validate", str(folder), code=1)
    assert (
        "Deployment/x-gateway: spec.template.spec.containers[0].imagee: unknown field"
        in result.output
    )


def test_a_bad_rollout_field_is_found_by_the_crd_schema(run: Run, tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", rollout=ROLLOUT % "twenty")
    result = run("k8s", "validate", str(folder / "rollout.yaml"), code=1)
    assert (
        "rollout.yaml: Rollout/chat: spec.strategy.canary.steps[0].setWeight: "
        "'twenty' is not of type 'integer'" in result.output
    )


def test_an_unknown_kind_is_an_error(run: Run, tmp_path: Path) -> None:
    widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    folder = _write(tmp_path / "m", widget=widget)
    result = run("k8s", "validate", str(folder), code=1)
    assert "widget.yaml: Widget/w: kind: unknown kind 'Widget'" in result.output


def test_every_invalid_object_is_reported(run: Run, tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "m",
        a=DEPLOYMENT.format(replicas="two", image_key="image"),
        b=ROLLOUT % "twenty",
        c="not: [valid",
    )
    result = run("k8s", "validate", str(folder), code=1)
    assert "Deployment/x-gateway" in result.output
    assert "Rollout/chat" in result.output
    assert f"{folder / 'c.yaml'} (line 1): not valid YAML" in result.output
    assert "3 error(s) in 2 objects" in result.output


def test_validate_objects_is_the_same_check_in_memory() -> None:
    import yaml

    ok = yaml.safe_load(SERVICE_MONITOR)
    assert validate_objects([("monitor.yaml", ok)]) == []
    bad = {**ok, "spec": {**ok["spec"], "endpoints": "http"}}
    assert validate_objects([("monitor.yaml", bad)]) == [
        "monitor.yaml: ServiceMonitor/gw: spec.endpoints: 'http' is not of type 'array'"
    ]


def test_bad_input_exits_2(run: Run, tmp_path: Path, good: Path) -> None:
    result = run("k8s", "validate", str(tmp_path / "nope"), code=2)
    assert "nope: no such file or folder" in result.output
    result = run("k8s", "validate", str(good), "--values", str(tmp_path / "v.yaml"), code=2)
    assert "--values applies to a chart" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no manifests" in run("k8s", "validate", str(empty), code=2).output
    result = run("k8s", "validate", str(good), "--kubernetes-version", "9.1.0", code=2)
    assert "--kubernetes-version 9.1.0: no schemas for it" in result.output
