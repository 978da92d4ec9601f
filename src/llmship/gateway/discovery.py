"""Prometheus HTTP service discovery of the model servers the gateway knows.

``GET /api/v1/targets`` answers in the format of Prometheus' ``http_sd_configs``:
one target group per live model server (replica), labelled with its release, so
one scrape job follows every replica the registry announces, whatever its port.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

__all__ = ["TargetGroup", "scrape_targets"]


class TargetGroup(BaseModel):
    """One entry of Prometheus' HTTP service discovery: targets sharing labels."""

    targets: list[str] = Field(description="`HOST:PORT` of each target.")
    labels: dict[str, str] = Field(
        description="`env`, `release` (NAME@VERSION) and `replica` (HOST:PORT); "
        "`__scheme__` and `__metrics_path__` where the URL needs them."
    )


def scrape_targets(env: str, endpoints: Mapping[str, tuple[str, ...]]) -> list[TargetGroup]:
    """A target group per model server URL in ``endpoints`` (``ref`` -> base URLs), in
    release order; a URL with a path prefix is scraped at ``PREFIX/metrics``."""
    groups = []
    for ref in sorted(endpoints):
        for url in endpoints[ref]:
            parts = urlsplit(url)
            if not parts.hostname:
                continue
            default_port = 443 if parts.scheme == "https" else 80
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            address = f"{host}:{parts.port or default_port}"
            labels = {"env": env, "release": ref, "replica": address}
            if parts.scheme == "https":
                labels["__scheme__"] = "https"
            if parts.path.strip("/"):
                labels["__metrics_path__"] = parts.path.rstrip("/") + "/metrics"
            groups.append(TargetGroup(targets=[address], labels=labels))
    return groups
