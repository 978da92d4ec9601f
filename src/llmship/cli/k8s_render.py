"""``llmship k8s render``: a rollout spec as manifests for Argo Rollouts or the chart's
controller (:mod:`llmship.k8s.render`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from llmship.cli._common import err_console, handle_errors, open_registry, settings
from llmship.errors import InvalidRequestError

__all__ = ["register"]


class EngineChoice(str, Enum):
    """Who runs the rollout."""

    argo = "argo"
    llmship = "llmship"


class RouterChoice(str, Enum):
    """How Argo splits a canary's traffic."""

    none = "none"
    nginx = "nginx"
    alb = "alb"
    istio = "istio"
    smi = "smi"


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``llmship k8s``."""

    @app.command("render")
    @handle_errors
    def render(
        rollout: Annotated[
            Path,
            typer.Option(
                "--rollout", metavar="FILE", help="Rollout spec, e.g. rollouts/seed-canary.yaml."
            ),
        ],
        release: Annotated[
            str,
            typer.Option(
                "--release",
                metavar="NAME@VERSION",
                help="The candidate, registered in the registry; it replaces the production "
                "release of the environment.",
            ),
        ],
        out: Annotated[
            Path, typer.Option("--out", metavar="DIR", help="Folder for the manifests.")
        ],
        engine: Annotated[
            EngineChoice,
            typer.Option(
                "--engine",
                help="argo: an Argo Rollouts Rollout with AnalysisTemplates; llmship: the "
                "chart's controller runs the rollout.",
            ),
        ] = EngineChoice.argo,
        values: Annotated[
            Path | None,
            typer.Option(
                "--values",
                metavar="FILE",
                help="The chart's values file: image, Secret, replicas and resources.",
            ),
        ] = None,
        traffic_routing: Annotated[
            RouterChoice,
            typer.Option(
                "--traffic-routing",
                help="Argo canary traffic: none (by pod count) or a router.",
            ),
        ] = RouterChoice.none,
        replicas: Annotated[
            int | None,
            typer.Option(
                "--replicas",
                metavar="N",
                min=1,
                help="Model servers (default: the values' replicaCount, else 1).",
            ),
        ] = None,
        namespace: Annotated[
            str | None,
            typer.Option("--namespace", metavar="NS", help="Namespace of every object."),
        ] = None,
        prometheus_url: Annotated[
            str | None,
            typer.Option(
                "--prometheus-url",
                metavar="URL",
                help="Prometheus that Argo's analysis queries "
                "(default: http://prometheus-operated.monitoring.svc:9090).",
            ),
        ] = None,
        image: Annotated[
            str | None,
            typer.Option(
                "--image", metavar="IMAGE", help="Image (default: the values', else llmship:0.1.0)."
            ),
        ] = None,
        secret: Annotated[
            str | None,
            typer.Option(
                "--secret",
                metavar="NAME",
                help="Secret with database-url and admin-token (default: the values' "
                "existingSecret, else the chart's llmship-secrets).",
            ),
        ] = None,
        env: Annotated[
            str | None,
            typer.Option(
                "--env",
                "-e",
                metavar="ENV",
                help="Environment (default: the values' env, else LLMSHIP_ENV or dev).",
            ),
        ] = None,
        allow_drop: Annotated[
            bool,
            typer.Option(
                "--allow-drop",
                help="Argo: leave out, with a warning, the metrics Argo cannot reproduce "
                "(compare: stable, shadow_similarity) instead of refusing.",
            ),
        ] = False,
        force: Annotated[
            bool,
            typer.Option("--force", help="Replace the manifests of a folder that is not empty."),
        ] = False,
    ) -> None:
        """Render the rollout spec --rollout for the candidate --release as manifests in
        --out: one file per object and a NOTES.md.

        With --engine argo, an Argo Rollouts Rollout of the model server, its Services
        and AnalysisTemplates whose PromQL reproduces the builtin metrics; what Argo
        cannot express is refused. With --engine llmship, the chart values that add the
        candidate's model servers and a Job that starts the rollout for the chart's
        controller. Nothing is written when anything is wrong.
        """
        from llmship.k8s.pod import ReleaseTarget
        from llmship.k8s.render import (
            DEFAULT_PROMETHEUS_URL,
            RenderOptions,
            check_out,
            load_values,
            write,
        )
        from llmship.k8s.render import render as render_spec
        from llmship.release.spec import parse_ref
        from llmship.rollout import load_rollout
        from llmship.rollout.ops import stable_for

        ref = parse_ref(release)
        if ref is None:
            raise InvalidRequestError(
                f"--release {release!r}: give the candidate as NAME@VERSION, e.g. chat@1.1.0",
                param="release",
            )
        check_out(out, force=force)
        spec = load_rollout(rollout)
        chart_values = load_values(values, ref[0])
        cfg = settings(env=env or chart_values.env)
        with open_registry(cfg) as registry:
            record = registry.get(*ref)
            stable = stable_for(registry, cfg.env, record.ref)
        target = ReleaseTarget(
            name=record.name,
            version=record.version,
            stable=stable,
            env=cfg.env,
            backend=record.spec.backend,
        )
        rendered = render_spec(
            spec,
            target,
            chart_values,
            RenderOptions(
                engine=engine.value,
                replicas=replicas,
                traffic_routing=traffic_routing.value,
                namespace=namespace,
                prometheus_url=prometheus_url or DEFAULT_PROMETHEUS_URL,
                allow_drop=allow_drop,
                image=image,
                secret=secret,
            ),
            source=str(rollout),
        )
        for warning in rendered.warnings:
            err_console.print(
                f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True
            )
        written = write(rendered, out, force=force)
        typer.echo(
            f"rendered rollout {spec.name} of {target.ref} (from {target.stable} in "
            f"{target.env}) for {engine.value}: {len(written)} files in {out}"
        )
