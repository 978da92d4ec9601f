"""``llmship k8s render``: a rollout spec as Kubernetes manifests, for one of two engines.

- ``argo``: Argo Rollouts runs the rollout (:mod:`llmship.k8s.argo`);
- ``llmship``: the chart's own controller runs it (:mod:`llmship.k8s.llmship_engine`).

Everything is rendered in memory first; a spec the engine cannot express, a bad
values file or an output folder that is not empty raises
:class:`~llmship.errors.InvalidRequestError` (the CLI's exit 2) before a file is
written. :func:`write` then puts one object per file in the folder, with a
``NOTES.md`` of what was rendered and what the engine cannot do::

    rendered = render(spec, target, RenderOptions(engine="argo", replicas=5), source=path)
    write(rendered, Path("deploy/rollout"))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml

from llmship.errors import InvalidRequestError
from llmship.k8s.argo import GATEWAY_ONLY_NOTES, ArgoOptions, Rendered, render_argo
from llmship.k8s.llmship_engine import render_llmship
from llmship.k8s.pod import DEFAULT_RESOURCES, PodOptions, ReleaseTarget
from llmship.rollout.spec import RolloutSpec

__all__ = [
    "DEFAULT_PROMETHEUS_URL",
    "DEFAULT_SECRET",
    "Engine",
    "ModelServerValues",
    "RenderOptions",
    "load_values",
    "render",
    "write",
]

Engine = Literal["argo", "llmship"]

DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
"""Where Argo's analysis queries Prometheus by default (prometheus-operator's Service)."""

DEFAULT_SECRET = "llmship-secrets"
"""The chart's Secret for the Helm release ``llmship`` (``existingSecret`` replaces it)."""

DEFAULT_IMAGE_REPOSITORY = "llmship"
CHART_APP_VERSION = "0.1.0"


@dataclass(frozen=True)
class ModelServerValues:
    """What the chart's values say about the release's model servers."""

    image: str = f"{DEFAULT_IMAGE_REPOSITORY}:{CHART_APP_VERSION}"
    pull_policy: str = "IfNotPresent"
    secret: str = DEFAULT_SECRET
    env: str | None = None
    replicas: int = 1
    resources: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    releases: list[dict[str, Any]] = field(default_factory=list)
    """The values' ``releases`` list as given (the llmship engine adds to it)."""


@dataclass(frozen=True)
class RenderOptions:
    """Everything ``llmship k8s render`` takes besides the spec and the release."""

    engine: Engine = "argo"
    replicas: int | None = None
    traffic_routing: str = "none"
    namespace: str | None = None
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    allow_drop: bool = False
    image: str | None = None
    secret: str | None = None
    instance: str = "llmship"


def _chart_schema() -> dict[str, Any] | None:
    schema = files("llmship.k8s") / "chart" / "values.schema.json"
    if not schema.is_file():
        return None
    data: dict[str, Any] = json.loads(schema.read_text(encoding="utf-8"))
    return data


def _where(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def load_values(path: Path | None, release_name: str) -> ModelServerValues:
    """The model-server settings of the chart values file ``path`` for ``release_name``:
    checked against the chart's ``values.schema.json``; InvalidRequestError naming the
    file and the field when they do not pass."""
    if path is None:
        return ModelServerValues()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise InvalidRequestError(f"{path}: cannot read the file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise InvalidRequestError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"{path}: chart values must be a mapping")
    schema = _chart_schema()
    if schema is not None:
        import jsonschema

        errors = sorted(
            jsonschema.Draft7Validator(schema).iter_errors(data), key=lambda e: list(e.path)
        )
        if errors:
            first = errors[0]
            raise InvalidRequestError(
                f"{path}: {_where(first.path)}: {first.message} (the chart's values.schema.json)"
            )
    image = data.get("image") or {}
    repository = image.get("repository", DEFAULT_IMAGE_REPOSITORY)
    tag = image.get("tag") or CHART_APP_VERSION
    releases = [dict(r) for r in data.get("releases") or []]
    entry = next((r for r in releases if r.get("name") == release_name), {})
    return ModelServerValues(
        image=f"{repository}:{tag}",
        pull_policy=image.get("pullPolicy", "IfNotPresent"),
        secret=data.get("existingSecret") or DEFAULT_SECRET,
        env=data.get("env"),
        replicas=int(entry.get("replicaCount") or data.get("replicaCount") or 1),
        resources=entry.get("resources") or data.get("resources") or dict(DEFAULT_RESOURCES),
        releases=releases,
    )


def render(
    spec: RolloutSpec,
    target: ReleaseTarget,
    values: ModelServerValues,
    options: RenderOptions,
    *,
    source: str = "rollout",
) -> Rendered:
    """The objects of ``spec`` rolling ``target`` out with ``options.engine``;
    InvalidRequestError naming what the engine cannot express."""
    pod = PodOptions(
        image=options.image or values.image,
        pull_policy=values.pull_policy,
        secret=options.secret or values.secret,
        instance=options.instance,
        resources=values.resources,
    )
    replicas = options.replicas if options.replicas is not None else values.replicas
    if options.engine == "llmship":
        rendered = render_llmship(
            spec,
            target,
            pod,
            replicas=replicas,
            values=values.releases,
            namespace=options.namespace,
        )
        if options.traffic_routing != "none":
            rendered.warnings.append(
                f"--traffic-routing {options.traffic_routing} is for --engine argo: with the "
                "llmship engine the gateways split the traffic"
            )
    else:
        rendered = render_argo(
            spec,
            target,
            ArgoOptions(
                replicas=replicas,
                traffic_routing=options.traffic_routing,
                prometheus_url=options.prometheus_url,
                allow_drop=options.allow_drop,
                namespace=options.namespace,
                pod=pod,
            ),
            source=source,
        )
        refused = [p for p in rendered.problems if not (p.droppable and options.allow_drop)]
        refused.sort(key=lambda p: p.droppable)
        if refused:
            hint = (
                " (--allow-drop leaves out the metrics Argo cannot reproduce)"
                if all(p.droppable for p in refused)
                else ""
            )
            raise InvalidRequestError(
                "Argo Rollouts cannot express this: " + "; ".join(map(str, refused)) + hint
            )
    if options.engine == "argo":
        rendered.notes = [f"- {note}" for note in rendered.notes]
    rendered.notes[:0] = _summary(spec, target, options, replicas, rendered)
    if options.engine == "argo":
        rendered.notes.append("\n## Not available under Argo Rollouts\n")
        rendered.notes.extend(f"- {line}" for line in GATEWAY_ONLY_NOTES)
    return rendered


def _summary(
    spec: RolloutSpec,
    target: ReleaseTarget,
    options: RenderOptions,
    replicas: int,
    rendered: Rendered,
) -> list[str]:
    engine = "Argo Rollouts" if options.engine == "argo" else "the llmship controller"
    lines = [
        f"# Rollout `{spec.name}` of {target.ref} ({engine})\n",
        f"Candidate {target.ref} replaces {target.stable} (production in `{target.env}`) "
        f"with the {spec.strategy.kind} strategy of the spec; {replicas} model server(s).\n",
        "| File | Object |",
        "|---|---|",
    ]
    for name, obj in rendered.files:
        what = f"{obj['kind']} `{obj['metadata']['name']}`" if "kind" in obj else "chart values"
        lines.append(f"| `{name}` | {what} |")
    lines.append("")
    if rendered.warnings:
        lines.append("## Warnings\n")
        lines.extend(f"- {w}" for w in rendered.warnings)
        lines.append("")
    if rendered.notes:
        lines.append("## Notes\n")
    return lines


def _empty(out: Path) -> bool:
    return not out.exists() or (out.is_dir() and not any(out.iterdir()))


def check_out(out: Path, *, force: bool) -> None:
    """Refuse an output folder that is a file, or holds anything, without ``force``."""
    if out.exists() and not out.is_dir():
        raise InvalidRequestError(f"--out {out}: is a file, not a folder", param="out")
    if not force and not _empty(out):
        raise InvalidRequestError(
            f"--out {out}: the folder is not empty; give --force to replace its manifests",
            param="out",
        )


def write(rendered: Rendered, out: Path, *, force: bool = False) -> list[Path]:
    """Write one file per object and ``NOTES.md`` into ``out``; with ``force`` the
    folder's earlier manifests (``*.yaml``, ``*.yml``, ``NOTES.md``) are removed first."""
    check_out(out, force=force)
    out.mkdir(parents=True, exist_ok=True)
    if force:
        old_files = [*out.glob("*.yaml"), *out.glob("*.yml"), *out.glob("helm/*.yaml")]
        for old in [*old_files, out / "NOTES.md"]:
            if old.is_file():
                old.unlink()
    written = []
    for name, obj in rendered.files:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(obj, sort_keys=False, allow_unicode=True), encoding="utf-8")
        written.append(path)
    notes = out / "NOTES.md"
    notes.write_text("\n".join(rendered.notes).rstrip() + "\n", encoding="utf-8")
    written.append(notes)
    return written
