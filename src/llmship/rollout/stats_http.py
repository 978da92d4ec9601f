"""The gateways' per-version statistics over HTTP: stats sources for the controller.

``GET {base_url}/api/v1/stats?env=ENV&ref=NAME@VERSION&window=SECONDS`` with the
admin bearer token answers :meth:`VersionStats.to_dict` as JSON (``null`` or
``NaN`` for a rate without requests).

:class:`GatewaysStats` reads every live gateway the registry lists (they announce
themselves) at once and merges their answers (:func:`~llmship.analysis.stats.merge_stats`:
quantiles over the union of all requests); the feedback, which lives in the
registry, is read once from there. A gateway that does not answer is named in the
measurement; if it may have carried traffic the statistics are
:class:`~llmship.analysis.stats.IncompleteStats` (the measurement is Inconclusive).
:class:`GatewayStats` reads one gateway given by URL. Any other failure raises
:class:`~llmship.analysis.MeasurementError`, which makes the measurement an Error
with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import httpx

from llmship.analysis.providers.base import MeasurementError
from llmship.analysis.stats import IncompleteStats, VersionStats, merge_stats
from llmship.registry.records import (
    GATEWAY_MAX_AGE_S,
    RECENT_REQUESTS_S,
    FeedbackRecord,
    GatewayRecord,
)

__all__ = ["STATS_PATH", "GatewayDirectory", "GatewayStats", "GatewaysStats", "gateway_url"]

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
        return self.fetch(env, ref, window_s)

    def fetch(self, env: str, ref: str, window_s: float, *, feedback: bool = True) -> VersionStats:
        """This gateway's stats of ``ref``; without ``feedback``, none of the ratings and
        thumbs (which every gateway reads from the same registry)."""
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        url = self.base_url + STATS_PATH
        params = {"env": env, "ref": ref, "window": _seconds(window_s)}
        if not feedback:
            params["feedback"] = "false"
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


class GatewayDirectory(Protocol):
    """What :class:`GatewaysStats` reads from the registry (``Registry`` has it)."""

    def list_gateways(self, env: str, *, max_age_s: float | None = None) -> list[GatewayRecord]: ...

    def list_feedback(
        self, env: str, ref: str, *, since: datetime | None = None
    ) -> list[FeedbackRecord]: ...


class GatewaysStats:
    """Every live gateway of the environment, merged: a ``StatsSource``.

    Lists the gateways announced in ``directory`` (heartbeat at most ``max_age_s``
    old, or the window when it is longer), asks each one's ``/api/v1/stats`` at the
    same time (``timeout`` seconds each), and merges the answers with the feedback
    read once from ``directory``.
    A gateway that does not answer is left out and named in the stats' notes when its
    last heartbeat counted no requests in the last minute (and the window is no
    longer); otherwise the stats would miss traffic and :class:`IncompleteStats` is
    raised. No live gateway, or none answering: MeasurementError. ``transport``
    replaces the network in tests; every gateway takes the same admin ``token``.
    """

    def __init__(
        self,
        directory: GatewayDirectory,
        token: str | None,
        *,
        max_age_s: float = GATEWAY_MAX_AGE_S,
        timeout: float = 3.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
    ):
        self.directory = directory
        self.max_age_s = max_age_s
        self._token = token
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._client = httpx.Client(transport=transport, timeout=timeout)

    def stats(self, env: str, ref: str, window_s: float) -> VersionStats:
        # A gateway that announced itself within the window may have answered requests
        # in it, even when its heartbeat has stopped since (cut off from the registry,
        # it still serves): it is asked too.
        max_age = max(self.max_age_s, window_s)
        gateways = self.directory.list_gateways(env, max_age_s=max_age)
        if not gateways:
            raise MeasurementError(
                f"no live gateway of env {env} is announced in the registry (none has sent a "
                f"heartbeat in the last {max_age:g}s): start `llmship gateway`, or give "
                "the controller `--gateway-url`"
            )
        with ThreadPoolExecutor(max_workers=min(len(gateways), 16)) as pool:
            answers = list(pool.map(lambda g: self._ask(g, env, ref, window_s), gateways))
        # Feedback is in the registry, the same at every gateway: read once, below.
        parts = [_without_feedback(a) for a in answers if isinstance(a, VersionStats)]
        failed = [(g, a) for g, a in zip(gateways, answers, strict=True) if isinstance(a, str)]
        busy = [
            (g, why) for g, why in failed if g.recent_requests > 0 or window_s > RECENT_REQUESTS_S
        ]
        if busy:
            raise IncompleteStats(
                f"{len(failed)} of {len(gateways)} gateways failed, and "
                + "; ".join(f"{why} ({_carried(g, window_s)})" for g, why in busy)
                + f": {ref}'s statistics would miss part of its traffic, so they are not judged"
            )
        if not parts:
            raise MeasurementError("no gateway answered: " + "; ".join(why for _, why in failed))
        notes = [f"left out {why} (no requests in its last minute)" for _, why in failed]
        if len(gateways) > 1:
            notes.insert(0, f"{len(parts)} of {len(gateways)} gateways")
        merged = merge_stats([*parts, self._feedback(env, ref, window_s)])
        return replace(merged, notes=notes + merged.notes)

    def _ask(self, gateway: GatewayRecord, env: str, ref: str, window_s: float) -> Any:
        one = GatewayStats(gateway.url, self._token, client=self._client)
        try:
            return one.fetch(env, ref, window_s, feedback=False)
        except MeasurementError as exc:
            why = str(exc)
            return why if one.base_url in why else f"{one.base_url}: {why}"

    def _feedback(self, env: str, ref: str, window_s: float) -> VersionStats:
        since = self._clock() - timedelta(seconds=window_s)
        given = self.directory.list_feedback(env, ref, since=since)
        thumbs = [f.value for f in given if f.kind == "thumbs"]
        return VersionStats(
            ratings=[f.value for f in given if f.kind == "rating"],
            thumbs_up=sum(thumbs),
            thumbs_down=len(thumbs) - sum(thumbs),
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __enter__(self) -> GatewaysStats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GatewaysStats({self.directory!r})"


def _without_feedback(stats: VersionStats) -> VersionStats:
    return replace(stats, ratings=[], thumbs_up=0, thumbs_down=0)


def _carried(gateway: GatewayRecord, window_s: float) -> str:
    if gateway.recent_requests > 0:
        return f"it answered {gateway.recent_requests} request(s) in its last heartbeat's minute"
    return f"its heartbeat tells of the last minute only, not of all {window_s:g}s"


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
