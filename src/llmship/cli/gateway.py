"""``llmship gateway``: route an environment's traffic to its releases."""

from __future__ import annotations

import typer

from llmship import tracing
from llmship.cli._common import (
    configure_logging,
    console,
    handle_errors,
    open_registry,
    settings,
    with_env_port,
)
from llmship.settings import Settings


def register(app: typer.Typer) -> None:
    """Add ``gateway`` to the root command."""

    @app.command("gateway")
    @handle_errors
    def gateway(
        env: str | None = typer.Option(
            None,
            "--env",
            "-e",
            metavar="ENV",
            help="Environment whose traffic policy it follows (default: LLMSHIP_ENV or dev).",
        ),
        host: str | None = typer.Option(
            None, help="Address to listen on (default: the gateway_host setting)."
        ),
        port: int | None = typer.Option(
            None,
            help="Port to listen on (default: the gateway_port setting, else the "
            "environment's: dev 8080, staging 8081, prod 8082).",
        ),
        advertise_url: str | None = typer.Option(
            None,
            "--advertise-url",
            metavar="URL",
            help="URL other hosts reach this gateway at, announced in the registry so the "
            "controller reads its statistics (default: from --host and --port; with "
            "0.0.0.0, this host's outward address).",
        ),
    ) -> None:
        """Run the gateway: OpenAI-compatible API, /predict, /feedback, flags, metrics and
        the admin API, in front of every live release of the environment.

        Requests go where the environment's traffic policy says (`llmship traffic`);
        model servers announce themselves when started with `llmship serve --release`.
        Any number of gateways of one environment can share a PostgreSQL registry: each
        announces itself there and hears of a policy change at once.
        """
        if advertise_url is not None:
            from llmship.advertise import check_advertise_url

            advertise_url = check_advertise_url(advertise_url, example_port=8080)
        cfg = with_env_port(settings(env=env, gateway_host=host, gateway_port=port))
        configure_logging(cfg.log_level, cfg.log_format)
        tracing.setup(cfg.tracing, "llmship-gateway", cfg.tracing_endpoint, environment=cfg.env)
        run_gateway(cfg, advertise_url=advertise_url)


def run_gateway(cfg: Settings, *, advertise_url: str | None = None) -> None:
    """Start uvicorn for the gateway of ``cfg.env`` and block until it stops.

    It announces itself in the registry at ``advertise_url`` (default: derived from
    the host and port it listens on).
    """
    import uvicorn

    from llmship.advertise import advertised_url
    from llmship.gateway import create_app
    from llmship.limits import uvicorn_options

    if advertise_url:
        announced, how = advertise_url, "--advertise-url"
    else:
        announced, how = advertised_url(
            cfg.gateway_host, cfg.gateway_port, database_url=cfg.database_url
        )
    with open_registry(cfg) as registry:
        app = create_app(registry, cfg, advertise_url=announced)
        config = uvicorn.Config(
            app,
            host=cfg.gateway_host,
            port=cfg.gateway_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
            **uvicorn_options(cfg.max_header_bytes),
        )
        server = uvicorn.Server(config)
        url = f"http://{_display_host(cfg.gateway_host)}:{cfg.gateway_port}"
        console.print(
            f"gateway of env [bold]{cfg.env}[/] at [bold]{url}[/] (registry {registry.url})"
        )
        console.print(f"  docs: {url}/docs   metrics: {url}/metrics", highlight=False)
        console.print(f"  dashboard: {url}/ui", highlight=False)
        console.print(f"  announced as {announced} ({how})", highlight=False)
        if cfg.admin_token:
            console.print(f"  admin API: {url}/api/v1/ (bearer token: LLMSHIP_ADMIN_TOKEN)")
        else:
            console.print("  admin API: off (set LLMSHIP_ADMIN_TOKEN to turn it on)")
        server.run()


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
