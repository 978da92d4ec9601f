"""``llmship up``: the whole local stack for one environment."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from llmship.cli._common import (
    configure_logging,
    console,
    fail,
    handle_errors,
    settings,
    with_env_port,
)
from llmship.cli.serve import resolve_release

if TYPE_CHECKING:
    from llmship.supervisor.stack import Stack


def register(app: typer.Typer) -> None:
    """Add ``up`` to the root command."""

    @app.command("up")
    @handle_errors
    def up(
        env: str | None = typer.Option(
            None, "--env", "-e", help="Environment to run (default: LLMSHIP_ENV or dev)."
        ),
        port: int | None = typer.Option(
            None,
            "--port",
            help="Gateway port (default: the gateway_port setting, else the environment's: "
            "dev 8080, staging 8081, prod 8082).",
        ),
    ) -> None:
        """Start the local stack: model servers for every release the environment needs
        (the traffic policy, a running rollout's candidate, flags; `replicas` of each,
        with `n_threads` llama.cpp threads), the gateway and the rollout controller;
        restart what crashes; stop everything on Ctrl-C or SIGTERM.

        On an empty registry the bundled SmolLM2 release becomes `production` first.
        """
        from llmship.supervisor.stack import Stack

        cfg = with_env_port(settings(env=env, gateway_port=port))
        configure_logging(cfg.log_level, cfg.log_format)
        resolve_release(cfg, None)  # an empty registry gets the bundled release as production
        stack = Stack(cfg, gateway_port=cfg.gateway_port, console=console)
        url = f"http://127.0.0.1:{cfg.gateway_port}"
        console.print(f"starting the local stack of env [bold]{cfg.env}[/] (logs in {stack.logs})")
        with stack.signals():
            if not stack.wait_ready():
                asked = stack.stopping
                stack.shutdown()
                if asked:
                    return
                raise fail(
                    f"the gateway did not become ready; see the logs in {stack.logs}", code=1
                )
            _print_ready(stack, url)
            stack.run()


def _print_ready(stack: Stack, url: str) -> None:
    console.print(f"\n[bold green]ready[/]: gateway at [bold]{url}[/]")
    console.print(f"  dashboard: {url}/ui", highlight=False)
    console.print(f"  docs:    {url}/docs    metrics: {url}/metrics", highlight=False)
    console.print(
        f"  try:     curl -s {url}/predict -H 'Content-Type: application/json' "
        """-d '{"prompt": "What is a canary release?", "max_new_tokens": 60}'""",
        highlight=False,
        soft_wrap=True,
    )
    where = stack.token_path or "LLMSHIP_ADMIN_TOKEN"
    console.print(
        f"  admin:   the API token for {url}/api/v1/ is in {where}",
        highlight=False,
        soft_wrap=True,
    )
    for name, port in sorted(stack.ports.items()):
        if name in stack.children:
            console.print(
                f"  serving: {stack.shown(name)} at http://127.0.0.1:{port}",
                highlight=False,
            )
    console.print(f"  logs:    {stack.logs}", highlight=False)
    console.print("  stop:    Ctrl-C\n")
