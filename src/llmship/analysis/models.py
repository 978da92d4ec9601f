"""Analysis templates and metrics as written in ``rollouts/*.yaml`` (Argo Rollouts' shape).

Field names are camelCase in YAML (``failureLimit``) and snake_case in Python
(``metric.failure_limit``). Every model refuses unknown fields. The checks Argo
Rollouts makes when it validates a metric are made here, at load time:
``count`` at least ``failureLimit``, ``inconclusiveLimit`` and
``consecutiveSuccessLimit``; an ``interval`` when ``count`` is above 1;
``failureLimit: -1`` only together with a ``consecutiveSuccessLimit``; exactly one
provider; conditions that parse.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from llmship.analysis.args import BUILTIN_ARGS, placeholders
from llmship.analysis.durations import Duration
from llmship.analysis.expr import compile_condition
from llmship.analysis.jsonpath import compile_path
from llmship.analysis.stats import BUILTIN_METRICS, GoodputSlo

__all__ = [
    "AnalysisRef",
    "AnalysisRunSpec",
    "AnalysisTemplate",
    "Argument",
    "BuiltinMetric",
    "GoodputSloSpec",
    "Header",
    "Metric",
    "MetricProvider",
    "PrometheusMetric",
    "RefArgument",
    "SpecModel",
    "TemplateRef",
    "WebMetric",
    "resolve_analysis",
]

NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
_NAME_RULE = (
    "must be 1-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
)


def check_name(value: str) -> str:
    """``value`` when it is a valid name (of a template, metric or rollout)."""
    if not re.match(NAME_PATTERN, value):
        raise ValueError(_NAME_RULE)
    return value


class SpecModel(BaseModel):
    """Base of every spec model: frozen, camelCase in YAML, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel)


def _http_url(value: str, what: str) -> str:
    if "{{" in value:  # checked again once the arguments are filled in
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an http:// or https:// URL, e.g. http://localhost:9090")
    return value


class Header(SpecModel):
    """One HTTP header sent with a query (Argo's ``{key, value}`` shape)."""

    key: str = Field(min_length=1)
    value: str


_SLO_DEFAULTS = GoodputSlo()


class GoodputSloSpec(SpecModel):
    """The per-request SLOs of the ``goodput`` metric (each a duration)."""

    ttft: Duration = Field(
        _SLO_DEFAULTS.ttft, description="Time to first token (streamed answers only)."
    )
    tpot: Duration = Field(
        _SLO_DEFAULTS.tpot,
        description="Time per output token after the first (streamed, two tokens or more).",
    )
    e2e: Duration = Field(_SLO_DEFAULTS.e2e, alias="e2e", description="End-to-end latency.")

    @field_validator("ttft", "tpot", "e2e")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be longer than 0s")
        return value

    def slo(self) -> GoodputSlo:
        """The bounds as the pure computation takes them."""
        return GoodputSlo(ttft=self.ttft, tpot=self.tpot, e2e=self.e2e)


class BuiltinMetric(SpecModel):
    """The gateway's per-version statistics over a window (see :data:`BUILTIN_METRICS`)."""

    metric: str = Field(description="Builtin metric name, e.g. error_rate or latency_p95.")
    window: Duration | None = Field(
        None, description="How far back to look (default: the controller's window)."
    )
    compare: Literal["stable"] | None = Field(
        None, description="Judge the candidate against stable with a significance test."
    )
    min_samples: int | None = Field(
        None,
        ge=1,
        description="Fewest samples for a verdict (default 1; 30 per side with compare).",
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of `compare`.")
    slo: GoodputSloSpec | None = Field(
        None,
        description="goodput only: the per-request SLOs (default ttft 2s, tpot 100ms, e2e 30s).",
    )

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in BUILTIN_METRICS:
            raise ValueError("must be one of " + ", ".join(BUILTIN_METRICS))
        return value

    @field_validator("window")
    @classmethod
    def _positive_window(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _comparable(self) -> BuiltinMetric:
        if self.compare and not BUILTIN_METRICS[self.metric].comparable:
            allowed = [n for n, info in BUILTIN_METRICS.items() if info.comparable]
            raise ValueError(
                f"compare: {self.metric} cannot be compared with stable; "
                f"compare works for {', '.join(allowed)}"
            )
        if self.slo is not None and self.metric != "goodput":
            raise ValueError(
                f"slo: only the goodput metric takes per-request SLOs, not {self.metric}"
            )
        return self

    @property
    def goodput_slo(self) -> GoodputSlo:
        """The SLOs ``goodput`` judges by: ``slo``, or the defaults."""
        return self.slo.slo() if self.slo is not None else GoodputSlo()

    @property
    def effective_min_samples(self) -> int:
        """``minSamples``, or its default: 30 with ``compare``, else 1."""
        if self.min_samples is not None:
            return self.min_samples
        return 30 if self.compare else 1


class PrometheusMetric(SpecModel):
    """A PromQL instant query; a vector gives a list of floats, a scalar one float."""

    address: str = Field(description="Base URL of the Prometheus server.")
    query: str = Field(min_length=1, description="PromQL, with {{args.NAME}} placeholders.")
    timeout_seconds: float = Field(10.0, gt=0, description="HTTP timeout.")
    headers: list[Header] = Field(default_factory=list)

    @field_validator("address")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value, "address")


class WebMetric(SpecModel):
    """A JSON endpoint; ``jsonPath`` selects the value from the answer."""

    url: str
    method: Literal["GET", "POST", "PUT"] = "GET"
    headers: list[Header] = Field(default_factory=list)
    body: str | None = Field(None, description="Request body (text), for POST and PUT.")
    json_body: Any = Field(None, description="Request body as JSON, for POST and PUT.")
    json_path: str = Field("$", description="JSONPath of the value, e.g. $.data.ok.")
    timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value, "url")

    @field_validator("json_path")
    @classmethod
    def _path(cls, value: str) -> str:
        compile_path(value)
        return value

    @model_validator(mode="after")
    def _body(self) -> WebMetric:
        if self.body is not None and self.json_body is not None:
            raise ValueError("give `body` or `jsonBody`, not both")
        if (self.body is not None or self.json_body is not None) and self.method == "GET":
            raise ValueError("a body needs method POST or PUT")
        return self


class MetricProvider(SpecModel):
    """Where a metric's value comes from: exactly one of builtin, prometheus, web."""

    builtin: BuiltinMetric | None = None
    prometheus: PrometheusMetric | None = None
    web: WebMetric | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MetricProvider:
        given = [n for n in ("builtin", "prometheus", "web") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one provider: builtin, prometheus or web"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        """``builtin``, ``prometheus`` or ``web``."""
        return next(n for n in ("builtin", "prometheus", "web") if getattr(self, n) is not None)

    def template_strings(self) -> Iterator[tuple[str, str]]:
        """``(field, text)`` of every field where ``{{args.NAME}}`` placeholders count."""
        if self.prometheus:
            yield "prometheus.address", self.prometheus.address
            yield "prometheus.query", self.prometheus.query
            for i, h in enumerate(self.prometheus.headers):
                yield f"prometheus.headers[{i}].value", h.value
        if self.web:
            yield "web.url", self.web.url
            yield "web.jsonPath", self.web.json_path
            for i, h in enumerate(self.web.headers):
                yield f"web.headers[{i}].value", h.value
            if self.web.body is not None:
                yield "web.body", self.web.body
            yield from (("web.jsonBody", s) for s in _strings(self.web.json_body))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


class Metric(SpecModel):
    """One metric of an analysis template, with Argo Rollouts' fields and defaults."""

    name: str = Field(description="Unique within the analysis.")
    interval: Duration | None = Field(None, description="Time between measurements.")
    initial_delay: Duration | None = Field(
        None, description="Wait this long after the analysis starts before measuring."
    )
    count: int | None = Field(
        None,
        ge=0,
        description="Measurements to take (none or 0: one without interval, else unbounded).",
    )
    success_condition: str | None = Field(None, description="A condition on `result`.")
    failure_condition: str | None = Field(None, description="A condition on `result`.")
    failure_limit: int = Field(
        0, ge=-1, description="Failed measurements tolerated (-1: no limit)."
    )
    inconclusive_limit: int = Field(0, ge=0, description="Inconclusive measurements tolerated.")
    consecutive_error_limit: int = Field(4, ge=0, description="Errors in a row tolerated.")
    consecutive_success_limit: int = Field(
        0, ge=0, description="Successes in a row that end the metric as Successful (0: off)."
    )
    provider: MetricProvider

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("success_condition", "failure_condition")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None:
            compile_condition(value)
        return value

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _limits(self) -> Metric:
        count = self.count or 0
        if count > 0:
            for field, limit in (
                ("failureLimit", self.failure_limit),
                ("inconclusiveLimit", self.inconclusive_limit),
                ("consecutiveSuccessLimit", self.consecutive_success_limit),
            ):
                if count < limit:
                    raise ValueError(f"count ({count}) must be >= {field} ({limit})")
        if count > 1 and self.interval is None:
            raise ValueError("give an interval when count is above 1, e.g. interval: 30s")
        if self.failure_limit == -1 and self.consecutive_success_limit == 0:
            raise ValueError(
                "failureLimit: -1 turns failures off; it needs a consecutiveSuccessLimit above 0"
            )
        builtin = self.provider.builtin
        if builtin and builtin.compare and (self.success_condition or self.failure_condition):
            raise ValueError(
                "a metric with `compare: stable` is decided by its significance test; "
                "remove successCondition and failureCondition"
            )
        return self

    @property
    def effective_count(self) -> int | None:
        """Measurements the metric takes: ``count``; without one, 1 when there is no
        interval and no bound (None) when there is (Argo's ``EffectiveCount``)."""
        if not self.count:
            return 1 if self.interval is None else None
        return self.count


class Argument(SpecModel):
    """An argument a template declares, with an optional default value."""

    name: str = Field(min_length=1)
    value: str | None = None

    @field_validator("name")
    @classmethod
    def _not_builtin(cls, value: str) -> str:
        if value in BUILTIN_ARGS:
            raise ValueError(
                f"{value!r} is filled in by llmship; declare only your own arguments "
                f"(built in: {', '.join(BUILTIN_ARGS)})"
            )
        return value


class AnalysisTemplate(SpecModel):
    """Named metrics that analysis steps and background analysis refer to."""

    name: str
    args: list[Argument] = Field(default_factory=list)
    metrics: list[Metric] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisTemplate:
        _unique((a.name for a in self.args), "args", "argument")
        _unique((m.name for m in self.metrics), "metrics", "metric")
        known = set(BUILTIN_ARGS) | {a.name for a in self.args}
        for i, metric in enumerate(self.metrics):
            for where, text in metric.provider.template_strings():
                for name in placeholders(text):
                    if name not in known:
                        raise ValueError(
                            f"metrics[{i}].provider.{where}: unknown argument "
                            f"{{{{args.{name}}}}}; declare it under `args` or use one of "
                            + ", ".join(BUILTIN_ARGS)
                        )
        return self


def _unique(names: Iterator[str], field: str, what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{field}: two {what}s are named {name!r}")
        seen.add(name)


class TemplateRef(SpecModel):
    """A reference to an analysis template by name."""

    template_name: str


class RefArgument(SpecModel):
    """A value for a template argument, given where the analysis is used."""

    name: str = Field(min_length=1)
    value: str


class AnalysisRef(SpecModel):
    """Analysis to run: the templates (merged) and values for their arguments."""

    templates: list[TemplateRef] = Field(min_length=1)
    args: list[RefArgument] = Field(default_factory=list)


@dataclass(frozen=True)
class AnalysisRunSpec:
    """What one analysis reference expands to: every metric of its templates, and the
    template arguments with their values (the built-in arguments are added per run)."""

    metrics: tuple[Metric, ...]
    args: Mapping[str, str]


def resolve_analysis(ref: AnalysisRef, templates: Sequence[AnalysisTemplate]) -> AnalysisRunSpec:
    """Merge the templates ``ref`` names (as Argo does); ValueError saying what is wrong:
    an unknown template, two metrics with one name, an argument without a value."""
    by_name = {t.name: t for t in templates}
    metrics: list[Metric] = []
    declared: dict[str, str | None] = {}
    for i, tref in enumerate(ref.templates):
        template = by_name.get(tref.template_name)
        if template is None:
            defined = ", ".join(sorted(by_name)) or "none"
            raise ValueError(
                f"templates[{i}].templateName: no analysis template named "
                f"{tref.template_name!r} (defined: {defined})"
            )
        metrics.extend(template.metrics)
        for arg in template.args:
            if declared.get(arg.name) is None:
                declared[arg.name] = arg.value
    seen: set[str] = set()
    for metric in metrics:
        if metric.name in seen:
            raise ValueError(
                f"templates: two metrics are named {metric.name!r}; metric names must differ "
                "across the templates of one analysis"
            )
        seen.add(metric.name)
    for i, given in enumerate(ref.args):
        if given.name not in declared:
            raise ValueError(
                f"args[{i}].name: no template here declares an argument {given.name!r}"
                + (f" (declared: {', '.join(sorted(declared))})" if declared else "")
            )
        declared[given.name] = given.value
    missing = sorted(name for name, value in declared.items() if value is None)
    if missing:
        raise ValueError(f"args: give a value for {', '.join(missing)}")
    return AnalysisRunSpec(tuple(metrics), {k: v for k, v in declared.items() if v is not None})
