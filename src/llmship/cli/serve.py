"""``llmship serve``: run one release's model server."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from llmship import tracing
from llmship.cli._common import (
    configure_logging,
    console,
    err_console,
    fail,
    handle_errors,
    open_registry,
    settings,
)
from llmship.errors import LlmshipError, NotFoundError
from llmship.release.bundled import bundled_spec
from llmship.release.spec import ReleaseSpec, load_spec
from llmship.server.announce import check_advertise_url
from llmship.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_ALIAS = "production"


def resolve_release(cfg: Settings, release: str | None) -> ReleaseSpec:
    """The spec to serve: ``release`` (NAME@VERSION or alias), else the ``production``
    alias; an empty registry gets the bundled release registered as ``production``."""
    with open_registry(cfg) as registry:
        if release:
            return registry.resolve(release, env=cfg.env).spec
        current = registry.get_alias(cfg.env, DEFAULT_ALIAS)
        if current is not None:
            return current.spec
        if not registry.is_empty():
            raise NotFoundError(
                f"no release has the alias {DEFAULT_ALIAS!r} in env {cfg.env!r}; pass "
                f"--release NAME@VERSION or run `llmship alias set {DEFAULT_ALIAS} NAME@VERSION "
                "--reason ...`"
            )
        record, _ = registry.register(bundled_spec(), actor=cfg.actor)
        registry.set_alias(
            cfg.env,
            DEFAULT_ALIAS,
            record.ref,
            actor=cfg.actor,
            reason="empty registry: serving the bundled default release",
        )
        err_console.print(
            f"registered the bundled release [bold]{record.ref}[/] as {DEFAULT_ALIAS!r} "
            f"in env {cfg.env!r}"
        )
        return record.spec


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the root command."""

    @app.command("serve")
    @handle_errors
    def serve(
        spec: Path | None = typer.Option(
            None,
            "--spec",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="Serve this release spec file as is.",
        ),
        release: str | None = typer.Option(
            None,
            "--release",
            metavar="REF",
            help="Serve NAME@VERSION or an alias from the registry.",
        ),
        host: str | None = typer.Option(
            None, help="Address to listen on (default: the serve_host setting)."
        ),
        port: int | None = typer.Option(
            None, help="Port to listen on (default: the serve_port setting)."
        ),
        env: str | None = typer.Option(
            None,
            "--env",
            "-e",
            metavar="ENV",
            help="Environment whose aliases apply (default: LLMSHIP_ENV or dev).",
        ),
        advertise_url: str | None = typer.Option(
            None,
            "--advertise-url",
            metavar="URL",
            help="URL gateways use to reach this server (default: http://HOST:PORT; on "
            "0.0.0.0 or ::, this host's address).",
        ),
        threads: int | None = typer.Option(
            None,
            "--threads",
            metavar="N",
            help="llama.cpp CPU threads, over the release's runtime.n_threads "
            "(default: the n_threads setting).",
        ),
    ) -> None:
        """Serve one release: OpenAI-compatible API, /predict, /metrics.

        With no --spec or --release it serves the `production` alias; when the
        registry is empty it registers the bundled SmolLM2 release first. A
        registered release is announced in the registry, so gateways on any host
        find it at --advertise-url.
        """
        if spec and release:
            raise fail("give --spec or --release, not both")
        if spec and advertise_url:
            raise fail(
                "--advertise-url announces a registered release (--release, or the production "
                "alias); a --spec file is not announced"
            )
        if advertise_url is not None:
            advertise_url = check_advertise_url(advertise_url)
        cfg = settings(env=env, serve_host=host, serve_port=port, n_threads=threads)
        configure_logging(cfg.log_level, cfg.log_format)
        tracing.setup(cfg.tracing, "llmship-serve", cfg.tracing_endpoint, environment=cfg.env)
        chosen = load_spec(spec) if spec else resolve_release(cfg, release)
        # a registered release is announced to the registry, so gateways find it
        run_server(chosen, cfg, announce=not spec, advertise_url=advertise_url)


def run_server(
    spec: ReleaseSpec, cfg: Settings, *, announce: bool = False, advertise_url: str | None = None
) -> None:
    """Start uvicorn for ``spec`` and block until it stops; exit 1 if the model fails to load.

    With ``announce`` the server registers its endpoint (``advertise_url``, else
    :func:`~llmship.server.announce.advertised_url`) in the registry once the model is
    loaded, and withdraws it when it stops. The ``n_threads`` setting overrides a
    llama.cpp release's ``runtime.n_threads``.
    """
    import uvicorn

    from llmship.backends.llamacpp import threads_of, with_threads
    from llmship.limits import uvicorn_options
    from llmship.server import build_service, create_app
    from llmship.server.announce import EndpointAnnouncer, advertised_url

    spec = with_threads(spec, cfg.n_threads)
    service = build_service(spec, cfg)  # checks the weights' sha256 before anything listens
    failures: list[LlmshipError] = []
    server: uvicorn.Server | None = None

    def on_load_error(exc: LlmshipError) -> None:
        failures.append(exc)
        if server is not None:
            server.should_exit = True

    url = f"http://{_display_host(cfg.serve_host)}:{cfg.serve_port}"
    announcer = None
    if announce:
        if advertise_url is not None:
            announced, how = advertise_url, "--advertise-url"
        else:
            announced, how = advertised_url(cfg)
        announcer = EndpointAnnouncer(cfg, spec.ref, announced)
    app = create_app(
        service,
        on_load_error=on_load_error,
        on_ready=announcer.run if announcer is not None else None,
    )
    config = uvicorn.Config(
        app,
        host=cfg.serve_host,
        port=cfg.serve_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        **uvicorn_options(cfg.max_header_bytes),
    )
    server = uvicorn.Server(config)
    backend: str = spec.backend
    if backend == "llamacpp":
        count = threads_of(spec)
        backend += f", {count} thread{'s' if count != 1 else ''}"
    console.print(f"serving [bold]{spec.ref}[/] ({backend}) at [bold]{url}[/]")
    if announcer is not None:
        console.print(
            f"  announced at {announcer.url} in env {cfg.env} ({how})",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"  docs: {url}/docs   metrics: {url}/metrics", highlight=False)
    console.print(
        f"  try:  curl -s {url}/predict -H 'Content-Type: application/json' "
        """-d '{"prompt": "What is a canary release?", "max_new_tokens": 60}'""",
        highlight=False,
        soft_wrap=True,
    )
    server.run()
    if failures:
        raise fail(failures[0].message, code=1)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
