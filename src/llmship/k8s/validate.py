"""Validation of Kubernetes manifests and of the Helm chart, by the real schemas and tools.

Core kinds are checked by ``kubernetes-validate`` against one pinned Kubernetes
version (:data:`KUBERNETES_VERSION`), strictly: an unknown field is an error.
The custom resources llmship renders (Argo Rollouts' ``Rollout``,
``AnalysisTemplate``, ``AnalysisRun``, ``Experiment``; prometheus-operator's
``ServiceMonitor``, ``PodMonitor``, ``PrometheusRule``) are checked against the
JSON schemas of their CRDs shipped beside this module (``crds/``, MIT, from
datree's CRDs catalog). Any other kind is an error: nothing goes unchecked.

A chart is rendered offline with ``helm-python-sdk`` (which applies the chart's
``values.schema.json``) and linted by Helm's own linter before its objects are
checked. Every error names the file (for a chart, the template), the object
(``Kind/name``) and the field (``spec.template.spec.containers[0].image``)::

    llmship/templates/gateway.yaml: Deployment/llmship-gateway: spec.replicas: 'two' is
    not of type 'integer', 'null'

``validate_objects`` checks objects already in memory (the renderer's tests use
it); ``validate_path`` reads a chart folder, a folder of manifests or one file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from llmship.errors import InvalidRequestError

__all__ = [
    "CUSTOM_KINDS",
    "INSTALL_HINT",
    "KUBERNETES_VERSION",
    "Report",
    "load_values_files",
    "render_chart",
    "validate_objects",
    "validate_path",
]

KUBERNETES_VERSION = "1.35.0"
"""The Kubernetes version whose schemas core kinds are checked against."""

CUSTOM_KINDS: Mapping[tuple[str, str], str] = {
    ("argoproj.io/v1alpha1", "Rollout"): "argoproj.io_rollout_v1alpha1.json",
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): "argoproj.io_analysistemplate_v1alpha1.json",
    ("argoproj.io/v1alpha1", "AnalysisRun"): "argoproj.io_analysisrun_v1alpha1.json",
    ("argoproj.io/v1alpha1", "Experiment"): "argoproj.io_experiment_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrule_v1.json",
}
"""Custom resources checked against a shipped CRD schema: (apiVersion, kind) -> file."""

INSTALL_HINT = "llmship k8s needs Helm and the Kubernetes schemas: pip install 'llmship[k8s]'"

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
RELEASE_NAME = "llmship"
"""The Helm release name a chart is rendered under for validation."""


@dataclass
class Report:
    """What validation found: how many objects were checked, and each error."""

    objects: int = 0
    errors: list[str] = field(default_factory=list)
    kubernetes_version: str = KUBERNETES_VERSION

    @property
    def ok(self) -> bool:
        """True when nothing was invalid."""
        return not self.errors

    def summary(self) -> str:
        """One line: ``N objects valid (Kubernetes X.Y.Z)``, or how many errors."""
        if self.ok:
            return f"{self.objects} objects valid (Kubernetes {self.kubernetes_version})"
        return (
            f"{len(self.errors)} error(s) in {self.objects} objects "
            f"(Kubernetes {self.kubernetes_version})"
        )


def _require_tools() -> None:
    """Raise a clear error when the ``k8s`` extra is not installed."""
    try:
        import helm_python  # noqa: F401
        import kubernetes_validate  # noqa: F401
    except ImportError as exc:
        raise InvalidRequestError(f"{INSTALL_HINT} ({exc.name} is missing)") from None


# -- paths and messages ------------------------------------------------------------------


def _field_path(parts: Iterable[object]) -> str:
    """A JSON path as users write it: ``spec.containers[0].image``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _describe(error: Any) -> Iterator[tuple[str, str]]:
    """(field, message) for one jsonschema error; an unknown field is named itself."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(key for key in error.instance if key not in known)
        if extra:
            for key in extra:
                yield _field_path([*path, key]), "unknown field"
            return
    yield _field_path(path), str(error.message)


def _object_name(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` of an object, as far as it has them."""
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{obj.get('kind') or '(no kind)'}/{name or '(no name)'}"


# -- checking objects --------------------------------------------------------------------


@cache
def _crd_validator(filename: str) -> Any:
    """A jsonschema validator for one shipped CRD schema."""
    from jsonschema import Draft202012Validator

    schema = json.loads((files("llmship.k8s") / "crds" / filename).read_text("utf-8"))
    return Draft202012Validator(schema)


def _check_core(obj: dict[str, Any], version: str) -> list[tuple[str, str]]:
    """(field, message) problems of a core kind, by kubernetes-validate (strict)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return list(_describe(exc))
    except kubernetes_validate.SchemaNotFoundError:
        return [
            (
                "kind",
                f"unknown kind {obj['kind']!r} of apiVersion {obj['apiVersion']!r}: "
                f"Kubernetes {version} has no such resource and llmship ships no CRD "
                "schema for it",
            )
        ]
    return []


def _check_custom(obj: dict[str, Any], filename: str) -> list[tuple[str, str]]:
    """(field, message) problems of a custom resource, by its CRD schema."""
    validator = _crd_validator(filename)
    problems: list[tuple[str, str]] = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
        problems.extend(_describe(error))
    return problems


def _check_one(obj: object, version: str) -> tuple[str, list[tuple[str, str]]]:
    """The object's ``Kind/name`` and its (field, message) problems."""
    if not isinstance(obj, dict):
        return "(not an object)", [("(top level)", f"expected a mapping, got {obj!r:.60}")]
    label = _object_name(obj)
    missing = [key for key in ("apiVersion", "kind") if not isinstance(obj.get(key), str)]
    if missing:
        return label, [(key, "missing: every Kubernetes object has one") for key in missing]
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        return label, [("metadata.name", "missing: every object needs a name")]
    custom = CUSTOM_KINDS.get((obj["apiVersion"], obj["kind"]))
    if custom is not None:
        return label, _check_custom(obj, custom)
    return label, _check_core(obj, version)


def _check_version(version: str) -> None:
    """Raise InvalidRequestError unless kubernetes-validate has schemas for ``version``."""
    from kubernetes_validate.utils import all_versions

    known = sorted(
        {v.rsplit(".", 1)[0] for v in all_versions()}, key=lambda v: tuple(map(int, v.split(".")))
    )
    if re.fullmatch(r"\d+\.\d+\.\d+", version) is None:
        raise InvalidRequestError(
            f"--kubernetes-version {version}: expected X.Y.Z, e.g. {KUBERNETES_VERSION}",
            param="kubernetes_version",
        )
    if version.rsplit(".", 1)[0] not in known:
        raise InvalidRequestError(
            f"--kubernetes-version {version}: no schemas for it; the installed "
            f"kubernetes-validate knows {known[0]} to {known[-1]}",
            param="kubernetes_version",
        )


def validate_objects(
    objects: Sequence[tuple[str, object]], kubernetes_version: str = KUBERNETES_VERSION
) -> list[str]:
    """Check each (source name, object) pair; one error string per problem found,
    ``SOURCE: Kind/name: FIELD: MESSAGE``. An empty list means all are valid.

    Raises InvalidRequestError when the k8s extra is missing or the Kubernetes
    version is not one kubernetes-validate has schemas for.
    """
    _require_tools()
    _check_version(kubernetes_version)
    errors: list[str] = []
    for source, obj in objects:
        label, problems = _check_one(obj, kubernetes_version)
        errors.extend(f"{source}: {label}: {where}: {message}" for where, message in problems)
    return errors


# -- reading manifests and charts --------------------------------------------------------


def _parse_documents(source: str, text: str) -> tuple[list[tuple[str, object]], list[str]]:
    """The non-empty YAML documents of ``text``, or the parse error naming ``source``."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return [], [f"{source}{line}: not valid YAML: {problem}"]
    objects: list[tuple[str, object]] = []
    for doc in documents:
        if isinstance(doc, dict) and doc.get("kind") == "List" and "items" in doc:
            objects.extend((source, item) for item in doc.get("items") or [])
        else:
            objects.append((source, doc))
    return objects, []


def _manifest_files(path: Path) -> list[Path]:
    """The manifest files at ``path``: the file itself, or a folder's own (not its
    subfolders', as ``kubectl apply -f DIR``; ``k8s render`` keeps chart values in
    ``helm/``), sorted."""
    if path.is_file():
        return [path]
    found = sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
    )
    if not found:
        raise InvalidRequestError(
            f"{path}: no manifests (*.yaml, *.yml, *.json) and no Chart.yaml here", param="path"
        )
    return found


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge of ``-f`` values files: maps merge, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_values_files(paths: Sequence[Path]) -> dict[str, Any]:
    """The values of ``paths`` merged in order (later files win), as ``helm -f`` does.

    Raises InvalidRequestError when a file cannot be read or is not a YAML mapping.
    """
    values: dict[str, Any] = {}
    for path in paths:
        try:
            loaded = yaml.safe_load(path.read_text("utf-8"))
        except OSError as exc:
            raise InvalidRequestError(
                f"--values {path}: cannot read it ({exc.strerror})", param="values"
            ) from None
        except yaml.YAMLError as exc:
            raise InvalidRequestError(
                f"--values {path}: not valid YAML: {exc}", param="values"
            ) from None
        if loaded is None:
            continue
        if not isinstance(loaded, dict):
            raise InvalidRequestError(
                f"--values {path}: expected a mapping of values, got {type(loaded).__name__}",
                param="values",
            )
        values = _deep_merge(values, loaded)
    return values


def render_chart(
    chart_dir: Path, values: Mapping[str, Any] | None = None, *, release: str = RELEASE_NAME
) -> dict[str, str]:
    """The chart's rendered manifests, template path -> text (``helm template``).

    Raises ``helm_python.HelmError`` when the values fail the chart's schema or a
    template fails; the message names the field or the template.
    """
    _require_tools()
    import helm_python

    with helm_python.Chart.load(chart_dir) as chart:
        return chart.render(dict(values or {}), name=release, namespace="default")


_SCHEMA_PROBLEM = re.compile(r"^- at '(?P<pointer>[^']*)': (?P<message>.+)$")
_UNKNOWN_KEYS = re.compile(r"^additional propert(y|ies) (?P<keys>.+) not allowed$")


def _pointer_path(pointer: str) -> str:
    """``/releases/0/name`` (a JSON pointer) as ``releases[0].name``."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/") if p]
    return _field_path(int(p) if p.isdigit() else p for p in parts)


def _helm_problems(source: str, message: str) -> list[str]:
    """Helm's message as error lines: a schema failure gives one line per field
    (``values: replicaCount: got string, want integer``), anything else one line."""
    fields = [m for m in map(_SCHEMA_PROBLEM.match, message.splitlines()) if m is not None]
    if not fields:
        return [f"{source}: {' '.join(message.split())}"]
    lines: list[str] = []
    for match in fields:
        pointer, text = match["pointer"], match["message"]
        unknown = _UNKNOWN_KEYS.match(text)
        keys = re.findall(r"'([^']*)'", unknown["keys"]) if unknown else []
        for key in keys:
            lines.append(f"{source}: values: {_pointer_path(f'{pointer}/{key}')}: unknown key")
        if not keys:
            lines.append(f"{source}: values: {_pointer_path(pointer)}: {text}")
    return [f"{line} (values.schema.json)" for line in lines]


def _chart_objects(
    chart_dir: Path, values: dict[str, Any], version: str
) -> tuple[list[tuple[str, object]], list[str]]:
    """The chart's rendered objects and the problems met on the way (render, lint)."""
    import helm_python

    try:
        rendered = render_chart(chart_dir, values)
    except helm_python.HelmError as exc:
        return [], _helm_problems(f"{chart_dir}: helm template", str(exc))
    errors: list[str] = []
    lint = helm_python.lint(chart_dir, values, kube_version=f"v{version}")
    for message in lint.get("messages") or []:
        if int(message.get("severity", 0)) >= 2:
            where = f"{chart_dir.name}/{message.get('path') or ''}".rstrip("/")
            errors.extend(_helm_problems(f"{where}: helm lint", str(message.get("error"))))
    objects: list[tuple[str, object]] = []
    for source in sorted(rendered):
        if not source.endswith(MANIFEST_SUFFIXES) or not rendered[source].strip():
            continue
        parsed, problems = _parse_documents(source, rendered[source])
        objects.extend(parsed)
        errors.extend(problems)
    return objects, errors


def validate_path(
    path: Path,
    values_files: Sequence[Path] = (),
    kubernetes_version: str = KUBERNETES_VERSION,
) -> Report:
    """Validate a chart folder (one with ``Chart.yaml``, rendered with ``values_files``),
    a folder of manifests or one manifest file.

    Raises InvalidRequestError on bad input: no such path, values given for something
    that is not a chart, a values file that cannot be read, the k8s extra missing.
    """
    _require_tools()
    _check_version(kubernetes_version)
    if not path.exists():
        raise InvalidRequestError(f"{path}: no such file or folder", param="path")
    report = Report(kubernetes_version=kubernetes_version)
    if path.is_dir() and (path / "Chart.yaml").is_file():
        values = load_values_files(values_files)
        objects, report.errors = _chart_objects(path, values, kubernetes_version)
    else:
        if values_files:
            raise InvalidRequestError(
                f"--values applies to a chart, and {path} has no Chart.yaml", param="values"
            )
        objects = []
        for file in _manifest_files(path):
            try:
                text = file.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidRequestError(f"{file}: cannot read it ({exc})", param="path") from None
            parsed, problems = _parse_documents(str(file), text)
            objects.extend(parsed)
            report.errors.extend(problems)
    report.objects = len(objects)
    report.errors.extend(validate_objects(objects, kubernetes_version))
    return report
