"""``llmship controller``: run the rollouts of an environment."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import typer

from llmship.cli._common import configure_logging, console, fail, handle_errors, open_registry
from llmship.cli._common import settings as load
from llmship.settings import Settings

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
        once: bool = typer.Option(False, "--once", help="Make one pass and exit."),
        gateway_url: str | None = typer.Option(
            None,
            "--gateway-url",
            metavar="URL",
            help="Gateway whose statistics feed builtin metrics "
            "(default: from the gateway_host and gateway_port settings).",
        ),
    ) -> None:
        """Run the environment's rollouts: measure their analysis, apply verdicts, timers,
        and what `llmship rollout` asked for, and move traffic and aliases.

        Every transition is saved in the registry before traffic changes, so a
        controller that dies and starts again resumes where it was. One log line
        per transition.
        """
        from llmship.analysis.durations import parse_duration

        try:
            seconds = parse_duration(interval)
        except ValueError as exc:
            raise fail(f"--interval {interval!r}: {exc}") from None
        if seconds <= 0:
            raise fail("--interval must be longer than 0s, e.g. 1s")
        cfg = load(env=env)
        configure_logging(cfg.log_level)
        run_controller(cfg, interval=seconds, once=once, gateway_url=gateway_url)


def run_controller(
    cfg: Settings, *, interval: float, once: bool = False, gateway_url: str | None = None
) -> None:
    """Run the controller of ``cfg.env`` until SIGTERM or Ctrl-C (or one pass)."""
    from llmship.analysis.providers import Providers
    from llmship.rollout.controller import Controller
    from llmship.rollout.stats_http import GatewayStats
    from llmship.rollout.stats_http import gateway_url as url_of

    url = gateway_url or url_of(cfg.gateway_host, cfg.gateway_port)
    token = admin_token(cfg)
    stop = threading.Event()
    with (
        open_registry(cfg) as registry,
        GatewayStats(url, token) as stats,
        Providers(stats=stats) as providers,
        Controller(
            registry,
            env=cfg.env,
            providers=providers,
            endpoint_max_age=cfg.endpoint_max_age,
        ) as ctl,
    ):
        if once:
            ctl.run_once()
            return
        console.print(
            f"controller of env [bold]{cfg.env}[/]: a pass every {interval:g}s, "
            f"statistics from {url} (registry {registry.url})",
            highlight=False,
        )
        if not token:
            console.print(
                "  no admin token (LLMSHIP_ADMIN_TOKEN): builtin metrics will be Errors",
                style="yellow",
            )

        def _stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        previous = signal.signal(signal.SIGTERM, _stop)
        try:
            ctl.run(interval, stop)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
