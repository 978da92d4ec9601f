"""Analysis templates and metrics as specs: durations, JSONPath, Argo's metric checks."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from llmship.analysis import (
    BUILTIN_METRICS,
    AnalysisRef,
    AnalysisTemplate,
    Header,
    JsonPathError,
    Metric,
    MetricProvider,
    Phase,
    compile_path,
    format_duration,
    parse_duration,
    resolve_analysis,
)
from llmship.analysis.args import BUILTIN_ARGS, placeholders, render
from llmship.analysis.expr import FUNCTIONS

# -- durations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1.5m", 90.0),
        ("0s", 0.0),
        (60, 60.0),
        (0.25, 0.25),
        ("45", 45.0),
        (" 10s ", 10.0),
    ],
)
def test_durations_parse(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "-5s", -1, "5 minutes", "5d", "s", "1m 30s", True, None, "nan", [1], "inf"]
)
def test_bad_durations_are_refused(text: Any) -> None:
    with pytest.raises(ValueError, match="duration such as"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30, "30s"), (90, "1m30s"), (3600, "1h"), (0.5, "500ms"), (0, "0s"), (1.5, "1.5s")],
)
def test_durations_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


# -- JSONPath ----------------------------------------------------------------------

DOC = {
    "data": {"ok": True, "rate": 0.02, "items": [{"x": 1}, {"x": 2}]},
    "a-b": {"c": "d"},
    "500": 7,
    "list": [10, 20, 30],
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", DOC),
        ("$.data.ok", True),
        ("$.data.rate", 0.02),
        ("$.data.items[0].x", 1),
        ("$.data.items[-1].x", 2),
        ("$.data.items[*].x", [1, 2]),
        ("$.data.items.*.x", [1, 2]),
        ("$['a-b'].c", "d"),
        ('$["a-b"]["c"]', "d"),
        ("$.500", 7),
        ("{$.data.rate}", 0.02),  # Argo's braces
        ("$.list[1]", 20),
        ("$.list[*]", [10, 20, 30]),
    ],
)
def test_jsonpath_selects(path: str, expected: Any) -> None:
    assert compile_path(path).select(DOC) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("$.missing", "no such key"),
        ("$.list[3]", "3 element"),
        ("$.data.ok.x", "not a mapping"),
        ("$.data[0]", "not a list"),
        ("$.data.rate[*]", "not a list or mapping"),
    ],
)
def test_jsonpath_misses_raise(path: str, message: str) -> None:
    with pytest.raises(JsonPathError, match=message):
        compile_path(path).select(DOC)


@pytest.mark.parametrize("path", ["data.ok", "$.a[", "$..a", "$.a[x]", "$ .a"])
def test_bad_jsonpaths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="JSONPath"):
        compile_path(path)


# -- template arguments ------------------------------------------------------------


def test_placeholders_render() -> None:
    text = 'rate{version="{{args.version}}",env="{{ args.env }}"}'
    assert list(placeholders(text)) == ["version", "env"]
    assert render(text, {"version": "a@1", "env": "prod"}) == 'rate{version="a@1",env="prod"}'
    with pytest.raises(KeyError):
        render("{{args.nope}}", {})


# -- metrics: Argo's validation ----------------------------------------------------

BUILTIN = {"builtin": {"metric": "error_rate"}}


def metric(**fields: Any) -> Metric:
    return Metric.model_validate({"name": "m", "provider": BUILTIN, **fields})


def test_metric_defaults_are_argos() -> None:
    m = metric()
    assert (m.failure_limit, m.inconclusive_limit) == (0, 0)
    assert (m.consecutive_error_limit, m.consecutive_success_limit) == (4, 0)
    assert (m.count, m.interval, m.initial_delay) == (None, None, None)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 1),
        ({"count": 0}, 1),
        ({"interval": "5s"}, None),
        ({"interval": "5s", "count": 0}, None),
        ({"interval": "5s", "count": 3}, 3),
        ({"count": 1}, 1),
    ],
)
def test_effective_count(fields: dict[str, Any], expected: int | None) -> None:
    assert metric(**fields).effective_count == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"count": 1, "failureLimit": 2}, r"count \(1\) must be >= failureLimit \(2\)"),
        ({"count": 1, "inconclusiveLimit": 2}, "must be >= inconclusiveLimit"),
        (
            {"count": 2, "interval": "1s", "consecutiveSuccessLimit": 3},
            "must be >= consecutiveSuccessLimit",
        ),
        ({"count": 2}, "give an interval when count is above 1"),
        ({"failureLimit": -1}, "needs a consecutiveSuccessLimit"),
        ({"failureLimit": -2}, "greater than or equal to -1"),
        ({"inconclusiveLimit": -1}, "greater than or equal to 0"),
        ({"consecutiveErrorLimit": -1}, "greater than or equal to 0"),
        ({"consecutiveSuccessLimit": -1}, "greater than or equal to 0"),
        ({"count": -1}, "greater than or equal to 0"),
        ({"interval": "0s"}, "longer than 0s"),
        ({"interval": "soon"}, "duration such as"),
        ({"successCondition": "result <"}, "not a valid expression"),
        ({"failureCondition": "os.system('x')"}, "unknown"),
        ({"name": "bad name"}, "letters, digits"),
        ({"failure_limit": 1}, "Extra inputs"),  # YAML uses camelCase only
        ({"provider": {}}, "exactly one provider"),
        (
            {"provider": {"builtin": {"metric": "error_rate"}, "web": {"url": "http://x"}}},
            "exactly one provider",
        ),
        ({"provider": {"datadog": {}}}, "Extra inputs"),
        ({"provider": {"builtin": {"metric": "errors"}}}, "must be one of error_rate"),
        (
            {"provider": {"builtin": {"metric": "request_count", "compare": "stable"}}},
            "cannot be compared",
        ),
        (
            {
                "successCondition": "result < 0.05",
                "provider": {"builtin": {"metric": "error_rate", "compare": "stable"}},
            },
            "remove successCondition",
        ),
        ({"provider": {"builtin": {"metric": "error_rate", "alpha": 1.5}}}, "less than 1"),
        ({"provider": {"builtin": {"metric": "error_rate", "window": "0s"}}}, "longer than 0s"),
        ({"provider": {"builtin": {"metric": "error_rate", "minSamples": 0}}}, "greater than"),
        ({"provider": {"prometheus": {"address": "prom:9090", "query": "up"}}}, "http://"),
        ({"provider": {"prometheus": {"address": "http://p:9090", "query": ""}}}, "at least 1"),
        ({"provider": {"web": {"url": "http://x", "jsonPath": "data"}}}, "starts with"),
        ({"provider": {"web": {"url": "http://x", "body": "{}"}}}, "POST or PUT"),
        (
            {
                "provider": {
                    "web": {"url": "http://x", "method": "POST", "body": "a", "jsonBody": {}}
                }
            },
            "not both",
        ),
        ({"provider": {"web": {"url": "http://x", "method": "DELETE"}}}, "'GET', 'POST'"),
    ],
)
def test_invalid_metrics_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        metric(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"count": 3, "interval": "5s", "failureLimit": 3},
        {"count": 1},
        {"count": 0, "failureLimit": 5},  # no count: the limits are not bounded by it
        {"interval": "5s", "failureLimit": -1, "consecutiveSuccessLimit": 2},
        {"provider": {"builtin": {"metric": "latency_p95", "compare": "stable"}}},
        {"provider": {"prometheus": {"address": "{{args.prom}}", "query": "up"}}},
        {"provider": {"web": {"url": "https://x/y", "method": "POST", "jsonBody": {"a": [1]}}}},
    ],
)
def test_valid_metrics(fields: dict[str, Any]) -> None:
    metric(**fields)


def test_a_metric_round_trips_in_yaml_shape() -> None:
    m = metric(interval="1m30s", initialDelay=5, count=3, successCondition="result < 1")
    data = m.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert data["interval"] == "1m30s" and data["initialDelay"] == "5s"
    assert Metric.model_validate(data) == m


# -- templates and references --------------------------------------------------------


def template(name: str, metrics: list[str], **fields: Any) -> AnalysisTemplate:
    return AnalysisTemplate.model_validate(
        {"name": name, "metrics": [{"name": m, "provider": BUILTIN} for m in metrics], **fields}
    )


def ref(*names: str, **args: str) -> AnalysisRef:
    return AnalysisRef.model_validate(
        {
            "templates": [{"templateName": n} for n in names],
            "args": [{"name": k, "value": v} for k, v in args.items()],
        }
    )


def test_templates_merge() -> None:
    templates = [template("a", ["x"]), template("b", ["y", "z"])]
    run = resolve_analysis(ref("a", "b"), templates)
    assert [m.name for m in run.metrics] == ["x", "y", "z"]
    assert run.args == {}


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (("a", "c"), "no analysis template named 'c' \\(defined: a, a2, b\\)"),
        (("a", "a2"), "two metrics are named 'x'"),
    ],
)
def test_bad_references_are_refused(names: tuple[str, ...], message: str) -> None:
    templates = [template("a", ["x"]), template("b", ["y"]), template("a2", ["x"])]
    with pytest.raises(ValueError, match=message):
        resolve_analysis(ref(*names), templates)


PROM = {
    "prometheus": {
        "address": "http://prom:9090",
        "query": 'sum(rate(x{service="{{args.service}}",version="{{args.version}}"}[1m]))',
    }
}


def test_template_arguments_resolve() -> None:
    t = AnalysisTemplate.model_validate(
        {
            "name": "t",
            "args": [{"name": "service"}, {"name": "quantile", "value": "0.95"}],
            "metrics": [{"name": "m", "provider": PROM}],
        }
    )
    run = resolve_analysis(ref("t", service="chat"), [t])
    assert run.args == {"service": "chat", "quantile": "0.95"}
    run = resolve_analysis(ref("t", service="chat", quantile="0.5"), [t])
    assert run.args["quantile"] == "0.5"
    with pytest.raises(ValueError, match="args: give a value for service"):
        resolve_analysis(ref("t"), [t])
    with pytest.raises(ValueError, match="no template here declares an argument 'nope'"):
        resolve_analysis(ref("t", service="a", nope="b"), [t])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"metrics": [{"name": "m", "provider": PROM}]},
            "unknown argument \\{\\{args.service\\}\\}",
        ),
        ({"metrics": []}, "at least 1 item"),
        (
            {"metrics": [{"name": "m", "provider": BUILTIN}, {"name": "m", "provider": BUILTIN}]},
            "two metrics are named 'm'",
        ),
        (
            {
                "args": [{"name": "a"}, {"name": "a"}],
                "metrics": [{"name": "m", "provider": BUILTIN}],
            },
            "two arguments are named 'a'",
        ),
        (
            {"args": [{"name": "version"}], "metrics": [{"name": "m", "provider": BUILTIN}]},
            "filled in by llmship",
        ),
    ],
)
def test_invalid_templates_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AnalysisTemplate.model_validate({"name": "t", **data})


def test_nan_is_not_a_duration() -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(math.nan)


# -- the documentation is checked against the code ------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "analysis.md"


def _documented(word: str) -> bool:
    text = DOCS.read_text(encoding="utf-8")
    return re.search(rf"`[^`\n]*\b{re.escape(word)}\b[^`\n]*`", text) is not None


def _fields(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        alias = field.alias or name
        yield prefix + alias
        inner = [a for a in (field.annotation, *get_args(field.annotation)) if isinstance(a, type)]
        for sub in inner:
            if issubclass(sub, BaseModel) and sub not in (MetricProvider, Header):
                yield from _fields(sub, f"{prefix}{alias}.")


METRIC_FIELDS = list(_fields(Metric)) + list(_fields(MetricProvider))


@pytest.mark.parametrize("field", METRIC_FIELDS)
def test_every_metric_field_is_documented(field: str) -> None:
    assert _documented(field), f"docs/analysis.md does not mention `{field}`"


@pytest.mark.parametrize(
    "word", [*BUILTIN_METRICS, *FUNCTIONS, *BUILTIN_ARGS, *(p.value for p in Phase)]
)
def test_names_are_documented(word: str) -> None:
    assert _documented(word) or word in DOCS.read_text(encoding="utf-8")


def test_analysis_doc_examples_are_valid() -> None:
    text = DOCS.read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S)]
    checked = 0
    for data in blocks:
        for template in data.get("analysisTemplates", []):
            AnalysisTemplate.model_validate(template)
            checked += 1
        if "provider" in data:
            metric(provider=data["provider"])
            checked += 1
        if "analysis" in data:
            AnalysisRef.model_validate(data["analysis"])
            checked += 1
    assert checked >= 5
