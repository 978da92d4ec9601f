"""The model server's pod, as the chart runs it, for manifests rendered outside the chart.

One container named ``model`` runs ``llmship serve --release NAME@VERSION`` on
port 8000 (named ``http``) and announces ``http://$(POD_IP):8000``, the pod's
own address from the downward API, so gateways on any node reach each pod. The
registry's URL and the admin token come from the chart's Secret (keys
``database-url`` and ``admin-token``). A slow model load is allowed ten minutes
by the startup probe before liveness takes over::

    template = pod_template(target, PodOptions(secret="llmship"))
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_RESOURCES",
    "PORT",
    "PodOptions",
    "ReleaseTarget",
    "dns_name",
    "label_value",
    "model_server_labels",
    "pod_template",
    "secret_env",
]

DEFAULT_IMAGE = "llmship:0.1.0"
"""The chart's image (``image.repository: llmship``, ``image.tag``: its appVersion)."""

PORT = 8000
"""The port the model server listens on, named ``http``."""

DEFAULT_RESOURCES: Mapping[str, Any] = {"requests": {"cpu": "1", "memory": "2Gi"}}
"""Resources of a model server when the values give none."""

STARTUP_PERIOD_S = 10
STARTUP_FAILURES = 60
"""Startup probe: 60 tries 10 s apart, ten minutes for a slow model load."""


@dataclass(frozen=True)
class ReleaseTarget:
    """What a rendering is for: the candidate release, the stable one it replaces, and
    the environment whose aliases and rollouts apply."""

    name: str
    version: str
    stable: str
    """The stable release, ``NAME@VERSION`` (the environment's production alias)."""
    env: str
    backend: str = "llamacpp"

    @property
    def ref(self) -> str:
        """``NAME@VERSION`` of the candidate: the ``version`` label of its metrics."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class PodOptions:
    """How the pod runs: image, the Secret it reads, resources, the chart's instance."""

    image: str = DEFAULT_IMAGE
    pull_policy: str = "IfNotPresent"
    secret: str = "llmship"
    """Name of the Secret with ``database-url`` and ``admin-token`` (the chart's fullname)."""
    instance: str = "llmship"
    """``app.kubernetes.io/instance``: the Helm release the chart runs under."""
    resources: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS-1123 label from ``parts`` joined by ``-``: lower case, other characters
    turned into ``-``, at most ``limit`` characters."""
    text = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower())
    return re.sub(r"-{2,}", "-", text)[:limit].strip("-") or "x"


def label_value(text: str) -> str:
    """``text`` as a label value: letters, digits, ``-``, ``_``, ``.``; 63 at most."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:63]
    return value.strip("._-")


def model_server_labels(target: ReleaseTarget, options: PodOptions) -> dict[str, str]:
    """The labels that select every model-server pod of the release's name (the
    version is not among them: stable and candidate pods share a selector)."""
    return {
        "app.kubernetes.io/name": "llmship",
        "app.kubernetes.io/instance": options.instance,
        "app.kubernetes.io/component": "model-server",
        "llmship.dev/release": label_value(target.name),
    }


def secret_env(secret: str) -> list[dict[str, Any]]:
    """``LLMSHIP_DATABASE_URL`` and ``LLMSHIP_ADMIN_TOKEN`` from the Secret ``secret``."""
    return [
        {
            "name": variable,
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
        }
        for variable, key in (
            ("LLMSHIP_DATABASE_URL", "database-url"),
            ("LLMSHIP_ADMIN_TOKEN", "admin-token"),
        )
    ]


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def pod_template(target: ReleaseTarget, options: PodOptions) -> dict[str, Any]:
    """The pod template of the candidate's model server (``metadata`` and ``spec``)."""
    labels = model_server_labels(target, options)
    labels["llmship.dev/version"] = label_value(target.version)
    container = {
        "name": "model",
        "image": options.image,
        "imagePullPolicy": options.pull_policy,
        "args": [
            "serve",
            "--release",
            target.ref,
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
            "--advertise-url",
            f"http://$(POD_IP):{PORT}",
        ],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            *secret_env(options.secret),
            {"name": "LLMSHIP_ENV", "value": target.env},
        ],
        "startupProbe": _probe("/healthz", period=STARTUP_PERIOD_S, failures=STARTUP_FAILURES),
        "readinessProbe": _probe("/readyz", period=5, failures=3),
        "livenessProbe": _probe("/healthz", period=10, failures=3),
        "resources": _plain(options.resources),
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    return {"metadata": {"labels": labels}, "spec": {"containers": [container]}}


def _plain(value: Any) -> Any:
    """``value`` as plain dicts and lists (quantities stay as given)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
