"""A rollout run by the chart's own controller (``llmship k8s render --engine llmship``).

Nothing of the strategy is translated: the controllers the chart runs read the
spec from the registry and drive the gateways, exactly as on one machine. What
the cluster needs is

- the candidate's model servers: ``helm/values-rollout.yaml``, the chart's
  ``releases:`` list with the candidate added (and the stable release kept: Helm
  replaces lists, it does not merge them);
- a ``ConfigMap`` holding the spec, and a ``Job`` that runs
  ``llmship rollout start /spec/rollout.yaml --candidate NAME@VERSION --env ENV``
  against the registry named by the chart's Secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmship.k8s.argo import Rendered
from llmship.k8s.pod import PodOptions, ReleaseTarget, dns_name, secret_env
from llmship.rollout.spec import RolloutSpec

__all__ = ["VALUES_FILE", "render_llmship"]

VALUES_FILE = "helm/values-rollout.yaml"
"""Where the chart values go: a subfolder, so `kubectl apply -f DIR` leaves it alone."""

SPEC_DIR = "/spec"
JOB_TTL_S = 86400


def _releases(
    values: Sequence[dict[str, Any]], target: ReleaseTarget, replicas: int
) -> list[dict[str, Any]]:
    """The chart's ``releases:`` with the stable release kept and the candidate added
    (with the settings of its name's entry: resources, node selector, ...)."""
    releases = [dict(r) for r in values]
    stable_name, _, stable_version = target.stable.partition("@")
    if not any(
        r.get("name") == stable_name and r.get("version") == stable_version for r in releases
    ):
        releases.append({"name": stable_name, "version": stable_version})
    same_name = next((r for r in releases if r.get("name") == target.name), {})
    candidate = {k: v for k, v in same_name.items() if k not in ("version", "spec")}
    candidate.update(name=target.name, version=target.version, replicaCount=replicas)
    releases = [
        r for r in releases if (r.get("name"), r.get("version")) != (target.name, target.version)
    ]
    releases.append(candidate)
    return releases


def render_llmship(
    spec: RolloutSpec,
    target: ReleaseTarget,
    pod: PodOptions,
    *,
    replicas: int,
    values: Sequence[dict[str, Any]] = (),
    namespace: str | None = None,
) -> Rendered:
    """The chart values, ConfigMap and Job that start ``spec`` for ``target``."""
    labels = {
        "app.kubernetes.io/name": "llmship",
        "app.kubernetes.io/instance": pod.instance,
        "app.kubernetes.io/component": "controller",
    }

    def metadata(name: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": dict(labels)}
        if namespace:
            meta["namespace"] = namespace
        return meta

    config_name = dns_name(pod.instance, "rollout", spec.name)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(config_name),
        "data": {"rollout.yaml": spec.to_yaml()},
    }
    container = {
        "name": "rollout",
        "image": pod.image,
        "imagePullPolicy": pod.pull_policy,
        "args": [
            "rollout",
            "start",
            f"{SPEC_DIR}/rollout.yaml",
            "--candidate",
            target.ref,
            "--env",
            target.env,
            "--reason",
            f"llmship k8s render: rollout {spec.name} of {target.ref}",
        ],
        "env": [
            *secret_env(pod.secret),
            {"name": "LLMSHIP_ENV", "value": target.env},
            {"name": "LLMSHIP_ACTOR", "value": "k8s-job"},
        ],
        "volumeMounts": [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    job_name = dns_name(pod.instance, "rollout", spec.name, target.version)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(job_name),
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": JOB_TTL_S,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [{"name": "spec", "configMap": {"name": config_name}}],
                },
            },
        },
    }
    rendered = Rendered()
    rendered.files.append((VALUES_FILE, {"releases": _releases(values, target, replicas)}))
    rendered.files.append(("configmap-rollout.yaml", config_map))
    rendered.files.append(("job-rollout-start.yaml", job))
    ns = f" -n {namespace}" if namespace else ""
    rendered.notes += [
        "The chart's controllers run the rollout, with every feature of the spec (the "
        "gateways split the traffic, retry on stable, compare shadow answers).\n",
        "1. Add the candidate's model servers (the values keep your other releases; "
        "give your own values file first):\n",
        "   ```bash",
        f"   helm upgrade llmship CHART -f your-values.yaml -f {VALUES_FILE}{ns}",
        "   ```\n",
        "2. Start the rollout (the Job runs `llmship rollout start` once):\n",
        "   ```bash",
        f"   kubectl apply{ns} -f configmap-rollout.yaml -f job-rollout-start.yaml",
        "   ```\n",
        "3. Watch it: `llmship rollout status --watch` against the same registry.\n",
    ]
    return rendered
