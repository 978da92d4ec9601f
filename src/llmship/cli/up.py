"""``llmship up``: the whole local stack for one environment."""

from __future__ import annotations

import typer

from llmship.cli._common import configure_logging, console, fail, handle_errors, settings
from llmship.cli.serve import resolve_release


def register(app: typer.Typer) -> None:
    """Add ``up`` to the root command."""

    @app.command("up")
    @handle_errors
    def up(
        env: str | None = typer.Option(
            None, "--env", "-e", help="Environment to run (default: LLMSHIP_ENV or dev)."
        ),
        port: int | None = typer.Option(
            None, "--port", help="Gateway port (default: the gateway_port setting)."
        ),
    ) -> None:
        """Start the local stack: a model server per release in the traffic policy, the
        gateway and the rollout controller; restart what crashes; stop everything on Ctrl-C.

        On an empty registry the bundled SmolLM2 release becomes `production` first.
        """
        from llmship.supervisor.stack import Stack

        cfg = settings(env=env, gateway_port=port)
        configure_logging(cfg.log_level)
        resolve_release(cfg, None)  # an empty registry gets the bundled release as production
        stack = Stack(cfg, gateway_port=cfg.gateway_port, console=console)
        url = f"http://127.0.0.1:{cfg.gateway_port}"
        console.print(f"starting the local stack of env [bold]{cfg.env}[/] (logs in {stack.logs})")
        try:
            if not stack.wait_ready():
                stack.shutdown()
                raise fail(
                    f"the gateway did not become ready; see the logs in {stack.logs}", code=1
                )
            console.print(f"\n[bold green]ready[/]: gateway at [bold]{url}[/]")
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
            console.print("  stop:    Ctrl-C\n")
        except KeyboardInterrupt:
            stack.shutdown()
            return
        stack.run()
