"""``llmship controller``: run the rollouts of an environment.

Any number may run per environment; the one holding the lease ``controller/ENV``
acts, the others stand by and take over when it stops or dies (``rollout/controller.py``).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from llmship.cli._common import (
    configure_logging,
    console,
    duration,
    fail,
    handle_errors,
    open_registry,
)
from llmship.cli._common import settings as load
from llmship.settings import Settings

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from llmship.registry import Registry
    from llmship.rollout.controller import Controller

DEFAULT_INTERVAL = "1s"


def admin_token(cfg: Settings) -> str | None:
    """The gateway's admin token: the setting, else the one ``llmship up`` keeps in
    ``<home>/admin-token``."""
    if cfg.admin_token:
        return cfg.admin_token
    path = Path(cfg.home) / "admin-token"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def register(app: typer.Typer) -> None:
    """Add ``controller`` to the root command."""

    @app.command("controller")
    @handle_errors
    def controller(
        env: str | None = typer.Option(
            None,
            "--env",
            "-e",
            metavar="ENV",
            help="Environment whose rollouts it runs (default: LLMSHIP_ENV or dev).",
        ),
        interval: str = typer.Option(
            DEFAULT_INTERVAL,
            "--interval",
            "-i",
            metavar="DURATION",
            help="Time between passes, e.g. 500ms, 1s, 5s.",
        ),
        lease_duration: str | None = typer.Option(
            None,
            "--lease-duration",
            metavar="DURATION",
            help="How long the leader's lease lasts unrenewed (default: 1.5 x --interval); "
            "a standby leads at most this plus a quarter interval after the leader dies.",
            show_default=False,
        ),
        once: bool = typer.Option(False, "--once", help="Make one pass and exit."),
        gateway_url: str | None = typer.Option(
            None,
            "--gateway-url",
            metavar="URL",
            help="One gateway whose statistics alone feed builtin metrics "
            "(default: every gateway of the environment announced in the registry, merged).",
        ),
        metrics_port: int | None = typer.Option(
            None,
            "--metrics-port",
            metavar="PORT",
            help="Serve Prometheus metrics of the rollouts on http://HOST:PORT/metrics "
            "(default: 9100 when it is free, else none; 0: none).",
            show_default=False,
        ),
        metrics_host: str = typer.Option(
            "127.0.0.1",
            "--metrics-host",
            metavar="HOST",
            help="Address the metrics listen on (0.0.0.0 for a Prometheus on another host).",
        ),
    ) -> None:
        """Run the environment's rollouts: measure their analysis, apply verdicts, timers,
        and what `llmship rollout` asked for, and move traffic and aliases.

        Every transition is saved in the registry before traffic changes, so a
        controller that dies and starts again resumes where it was. One log line
        per transition.

        Run two or more per environment to survive losing one: the holder of the
        lease controller/ENV acts, the others stand by; when it is killed or cut
        off, another leads within two intervals, at the same step. SIGTERM
        releases the lease, so a standby leads at once.

        Each controller, leading or not, serves the rollouts' state, weights and
        analysis verdicts, read from the registry, on /metrics (--metrics-port).
        """
        seconds = duration("--interval", interval)
        if metrics_port is not None and not 0 <= metrics_port <= 65535:
            raise fail(f"--metrics-port {metrics_port}: give a port from 1 to 65535, or 0")
        lease = duration("--lease-duration", lease_duration) if lease_duration else None
        cfg = load(env=env)
        configure_logging(cfg.log_level, cfg.log_format)
        run_controller(
            cfg,
            interval=seconds,
            once=once,
            gateway_url=gateway_url,
            lease_duration=lease,
            metrics=None if once else (metrics_host, metrics_port),
        )


def run_controller(
    cfg: Settings,
    *,
    interval: float,
    once: bool = False,
    gateway_url: str | None = None,
    lease_duration: float | None = None,
    metrics: tuple[str, int | None] | None = None,
) -> None:
    """Run the controller of ``cfg.env`` until SIGTERM or Ctrl-C (or one pass), while
    it holds the lease ``controller/ENV``; standing by while another controller does.

    ``metrics`` is ``(host, port)`` to serve ``/metrics`` on: port None tries the
    default port and goes without when it is taken, 0 serves none."""
    from llmship.analysis.providers import Providers
    from llmship.rollout.controller import LEASE_INTERVALS, Controller
    from llmship.rollout.stats_http import GatewaysStats, GatewayStats

    token = admin_token(cfg)
    lease_s = lease_duration if lease_duration is not None else LEASE_INTERVALS * interval
    stop = threading.Event()
    with (
        open_registry(cfg) as registry,
        (
            GatewayStats(gateway_url, token) if gateway_url else GatewaysStats(registry, token)
        ) as stats,
        Providers(stats=stats) as providers,
        Controller(
            registry,
            env=cfg.env,
            providers=providers,
            endpoint_max_age=cfg.endpoint_max_age,
            lease_duration=lease_s,
        ) as ctl,
    ):
        if once:
            try:
                ctl.run_once()
                if ctl.lease is None:
                    console.print(_standby(registry, ctl.lease_name), highlight=False)
            finally:
                ctl.release()
            return
        console.print(
            f"controller of env [bold]{cfg.env}[/] ({ctl.holder}): a pass every {interval:g}s "
            f"while it holds the lease {ctl.lease_name} ({lease_s:g}s), statistics from "
            f"{gateway_url or 'every live gateway of ' + cfg.env} "
            f"(registry {registry.url})",
            highlight=False,
        )
        if not token:
            console.print(
                "  no admin token (LLMSHIP_ADMIN_TOKEN): builtin metrics will be Errors",
                style="yellow",
            )
        server = _serve_metrics(registry, ctl, metrics) if metrics is not None else None

        def _stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        previous = signal.signal(signal.SIGTERM, _stop)
        try:
            ctl.run(interval, stop)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            if server is not None:
                server.shutdown()
                server.server_close()


def _serve_metrics(
    registry: Registry, ctl: Controller, where: tuple[str, int | None]
) -> WSGIServer | None:
    """Serve the rollouts' metrics on ``where`` (see :func:`run_controller`)."""
    from prometheus_client import CollectorRegistry

    from llmship.rollout.metrics import DEFAULT_METRICS_PORT, RolloutCollector, serve_metrics

    host, port = where
    if port == 0:
        return None
    collectors = CollectorRegistry()
    collectors.register(
        RolloutCollector(registry, ctl.env or "", leading=lambda: ctl.lease is not None)
    )
    try:
        server = serve_metrics(collectors, host, port or DEFAULT_METRICS_PORT)
    except OSError as exc:
        if port is not None:
            raise fail(
                f"--metrics-port {port}: cannot listen on {host}:{port}: {exc.strerror}", code=1
            ) from None
        console.print(
            f"  no /metrics: port {DEFAULT_METRICS_PORT} is taken ({exc.strerror}); "
            "give --metrics-port PORT",
            style="yellow",
            highlight=False,
        )
        return None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(f"  metrics: http://{shown}:{server.server_port}/metrics", highlight=False)
    return server


def _standby(registry: Registry, name: str) -> str:
    lease = registry.get_lease(name)
    holder = lease.holder if lease is not None else "another controller"
    return f"standby: {holder} holds the lease {name}; this pass did nothing"
