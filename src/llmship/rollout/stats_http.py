"""The gateway's per-version statistics over HTTP: a ``StatsSource`` for the controller.

``GET {base_url}/api/v1/stats?env=ENV&ref=NAME@VERSION&window=SECONDS`` with the
admin bearer token answers :meth:`VersionStats.to_dict` as JSON (``null`` or
``NaN`` for a rate without requests). Any failure (the gateway down, a non-2xx
answer, a body that is not statistics) raises
:class:`~llmship.analysis.MeasurementError`, which makes the measurement an Error
with the reason.
"""

from __future__ import annotations

from typing import Any

import httpx

from llmship.analysis.providers.base import MeasurementError
from llmship.analysis.stats import VersionStats

__all__ = ["STATS_PATH", "GatewayStats", "gateway_url"]

STATS_PATH = "/api/v1/stats"


def gateway_url(host: str, port: int) -> str:
    """The URL to reach a gateway listening on ``host:port`` (``0.0.0.0`` -> 127.0.0.1)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


class GatewayStats:
    """Reads :class:`VersionStats` from a gateway's admin API.

    ``transport`` (e.g. ``httpx.MockTransport``) replaces the network in tests.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        client: httpx.Client | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._own_client = client is None
        self._client = client or httpx.Client(transport=transport, timeout=timeout)

    def stats(self, env: str, ref: str, window_s: float) -> VersionStats:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        url = self.base_url + STATS_PATH
        params = {"env": env, "ref": ref, "window": _seconds(window_s)}
        try:
            response = self._client.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise MeasurementError(
                f"the gateway at {self.base_url} did not answer ({type(exc).__name__}: {exc})"
            ) from exc
        if response.status_code >= 400:
            raise MeasurementError(
                f"the gateway answered {response.status_code} for {STATS_PATH}: "
                f"{_error_message(response)}"
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise MeasurementError(f"the gateway's {STATS_PATH} did not answer JSON") from exc
        if not isinstance(data, dict):
            raise MeasurementError(f"the gateway's {STATS_PATH} answered {type(data).__name__}")
        try:
            return VersionStats.from_dict(data)
        except ValueError as exc:
            raise MeasurementError(f"the gateway's {STATS_PATH}: {exc}") from exc

    def close(self) -> None:
        """Close the HTTP client this object made."""
        if self._own_client:
            self._client.close()

    def __enter__(self) -> GatewayStats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GatewayStats({self.base_url!r})"


def _seconds(value: float) -> str:
    """``30`` or ``0.5``: plain seconds, never an exponent."""
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _error_message(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))[:200]
    return str(body)[:200]
