"""A rollout spec as Argo Rollouts objects: a ``Rollout``, its Services, ``AnalysisTemplate``s.

The Rollout runs the candidate's model server (:func:`~llmship.k8s.pod.pod_template`)
with the spec's strategy:

- ``canary``: the steps one for one (``setWeight``, ``pause``, ``analysis``), the
  background analysis with its ``startingStep``; traffic split by pod count, or by
  one of Argo's routers (nginx, alb, istio, smi) with canary and stable Services;
- ``blueGreen``: active and preview Services and every blueGreen field;
- ``shadow``: Istio only, as a canary that mirrors (``setMirrorRoute``) for the
  duration under the analysis, then takes all traffic;
- ``experiment``: refused (Argo cannot split users stickily or decide by a test).

Each analysis template becomes an ``AnalysisTemplate``: ``builtin`` metrics as a
``prometheus`` query (:mod:`llmship.k8s.promql`) whose conditions make "fewer than
minSamples" Inconclusive as llmship does; ``prometheus`` and ``web`` metrics carried
over. What Argo cannot reproduce (a comparison with stable, the gateway's shadow
similarity) is refused, or left out with ``allow_drop``; a :class:`Problem` says
which and why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmship.analysis.args import BUILTIN_ARGS, placeholders
from llmship.analysis.durations import format_duration
from llmship.analysis.models import AnalysisRef, AnalysisTemplate, Metric
from llmship.k8s.conditions import to_argo
from llmship.k8s.pod import (
    PORT,
    PodOptions,
    ReleaseTarget,
    dns_name,
    model_server_labels,
    pod_template,
)
from llmship.k8s.promql import GOODPUT_HAS_NO_PROMQL, builtin_query
from llmship.rollout.spec import BackgroundAnalysis, RolloutSpec

__all__ = [
    "API_VERSION",
    "ROUTERS",
    "ArgoOptions",
    "Problem",
    "Rendered",
    "render_argo",
]

API_VERSION = "argoproj.io/v1alpha1"
ROUTERS = ("none", "nginx", "alb", "istio", "smi")
"""Canary traffic routing: by pod count (``none``) or by one of these Argo routers."""

MIRROR_ROUTE = "llmship-shadow"
"""The Istio route a shadow rollout mirrors with (Argo's ``managedRoutes``)."""

DEFAULT_WINDOW_S = 60.0
"""A builtin metric's window when the spec gives none (the controller's default)."""

_TESTS = {
    "error_rate": "Fisher's exact test",
    "thumbs_up_rate": "Fisher's exact test",
    "feedback_mean": "Mann-Whitney U",
}

GATEWAY_ONLY_NOTES = (
    "Retry on stable: the llmship gateway retries a request that fails on the candidate "
    "before its first byte on stable; with Argo the traffic goes from Kubernetes Services "
    "(or the router) straight to the pods, so a failure reaches the client.",
    "Shadow comparison: only the gateway compares a mirrored answer with the one the "
    "client got (`shadow_similarity`); Istio's mirror sends copies nobody compares.",
    "Sticky A/B experiments decided by a significance test, and analysis that compares "
    "the candidate with stable (`compare: stable`): no Argo equivalent.",
    "The registry is not told: Argo promotes by replacing pods, the `production` alias "
    "does not move and `llmship rollout status` shows nothing. After Argo promotes, "
    "`llmship alias set production NAME@VERSION --reason ...` records it.",
)


@dataclass(frozen=True)
class ArgoOptions:
    """How to render: replicas, traffic routing, where Prometheus is, what to drop."""

    replicas: int = 1
    traffic_routing: str = "none"
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    allow_drop: bool = False
    namespace: str | None = None
    pod: PodOptions = field(default_factory=PodOptions)


@dataclass(frozen=True)
class Problem:
    """Something of the spec Argo cannot express: where in the file, and why."""

    where: str
    why: str
    droppable: bool = False
    """True for a metric ``allow_drop`` may leave out; False for a refusal."""

    def __str__(self) -> str:
        return f"{self.where}: {self.why}"


@dataclass
class Rendered:
    """Objects by file name, with what the user should know (warnings, notes)."""

    files: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _seconds(value: float) -> int | str:
    """Whole seconds as an int (Argo reads ints as seconds), else a duration text."""
    return int(value) if value == int(value) else format_duration(value)


class _Renderer:
    def __init__(self, spec: RolloutSpec, target: ReleaseTarget, options: ArgoOptions, source: str):
        self.spec = spec
        self.source = source
        self.target = target
        self.options = options
        self.out = Rendered()
        self.name = dns_name(options.pod.instance, target.name)
        self.labels = model_server_labels(target, options.pod)
        self.templates: dict[str, dict[str, Any]] = {}
        """Argo AnalysisTemplate per template name of the spec (None: every metric dropped)."""
        self.template_args: dict[str, list[str]] = {}
        self.caveats: dict[str, str] = {}
        """Builtin metric -> how its PromQL differs from the builtin provider."""

    # -- metadata and Services --------------------------------------------------------

    def metadata(self, name: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": dict(self.labels)}
        if self.options.namespace:
            meta["namespace"] = self.options.namespace
        return meta

    def service(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(name),
            "spec": {
                "selector": dict(self.labels),
                "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
            },
        }

    def ingress(self, name: str, ingress_class: str, service: str) -> dict[str, Any]:
        backend = {"service": {"name": service, "port": {"name": "http"}}}
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": self.metadata(name),
            "spec": {
                "ingressClassName": ingress_class,
                "rules": [
                    {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
                ],
            },
        }

    # -- analysis ---------------------------------------------------------------------

    def metric(self, metric: Metric, where: str) -> dict[str, Any] | None:
        """The Argo metric, or None (with a Problem) when Argo cannot reproduce it."""
        out: dict[str, Any] = {"name": metric.name}
        if metric.interval is not None:
            out["interval"] = format_duration(metric.interval)
        if metric.initial_delay is not None:
            out["initialDelay"] = format_duration(metric.initial_delay)
        if metric.count:
            out["count"] = metric.count
        for key, value, default in (
            ("failureLimit", metric.failure_limit, 0),
            ("inconclusiveLimit", metric.inconclusive_limit, 0),
            ("consecutiveErrorLimit", metric.consecutive_error_limit, 4),
            ("consecutiveSuccessLimit", metric.consecutive_success_limit, 0),
        ):
            if value != default:
                out[key] = value
        provider = metric.provider
        if provider.builtin is not None:
            builtin = provider.builtin
            if builtin.compare:
                self.problem(
                    f"{where}.provider.builtin.compare",
                    f"metric {metric.name!r} compares the candidate with stable by a "
                    f"significance test ({_TESTS.get(builtin.metric, 'Mann-Whitney U')}); "
                    "Argo judges one query's value by conditions and cannot run it",
                )
                return None
            if builtin.metric == "shadow_similarity":
                self.problem(
                    f"{where}.provider.builtin.metric",
                    f"metric {metric.name!r} is shadow_similarity, which only the llmship "
                    "gateway measures (it compares each mirrored answer with the one served); "
                    "under Argo nobody compares mirrored answers",
                )
                return None
            if builtin.metric == "goodput":
                self.problem(
                    f"{where}.provider.builtin.metric",
                    f"metric {metric.name!r} is goodput: {GOODPUT_HAS_NO_PROMQL}; under Argo "
                    "bound ttft_p95, tpot_p95 and latency_p95 instead",
                )
                return None
            query = builtin_query(builtin.metric, builtin.window or DEFAULT_WINDOW_S)
            self.caveats.setdefault(builtin.metric, query.caveat)
            out["provider"] = {
                "prometheus": {
                    "address": self.options.prometheus_url,
                    "query": query.guarded(builtin.effective_min_samples),
                }
            }
            out.update(_guarded_conditions(metric))
            return out
        if metric.success_condition:
            out["successCondition"] = to_argo(metric.success_condition)
        if metric.failure_condition:
            out["failureCondition"] = to_argo(metric.failure_condition)
        if provider.prometheus is not None:
            prom = provider.prometheus
            body: dict[str, Any] = {
                "address": prom.address,
                "query": prom.query,
                "timeout": math.ceil(prom.timeout_seconds),
            }
            if prom.headers:
                body["headers"] = [{"key": h.key, "value": h.value} for h in prom.headers]
            out["provider"] = {"prometheus": body}
            return out
        web = provider.web
        assert web is not None
        path = web.json_path if web.json_path.startswith("{") else "{" + web.json_path + "}"
        body = {
            "url": web.url,
            "method": web.method,
            "jsonPath": path,
            "timeoutSeconds": math.ceil(web.timeout_seconds),
        }
        if web.headers:
            body["headers"] = [{"key": h.key, "value": h.value} for h in web.headers]
        if web.body is not None:
            body["body"] = web.body
        if web.json_body is not None:
            if not isinstance(web.json_body, dict):
                self.problem(
                    f"{where}.provider.web.jsonBody",
                    "Argo's web provider takes a JSON object as jsonBody; give an object or "
                    "write it as text in `body`",
                )
                return None
            body["jsonBody"] = web.json_body
        out["provider"] = {"web": body}
        return out

    def problem(self, where: str, why: str, *, droppable: bool = True) -> None:
        self.out.problems.append(Problem(f"{self.source}: {where}", why, droppable))

    def analysis_template(self, index: int, template: AnalysisTemplate) -> None:
        metrics = []
        uses: set[str] = set()
        for i, metric in enumerate(template.metrics):
            converted = self.metric(metric, f"analysisTemplates[{index}].metrics[{i}]")
            if converted is not None:
                metrics.append(converted)
                uses.update(_arguments(metric))
            elif self.options.allow_drop:
                self.out.warnings.append(
                    f"left out metric {metric.name!r} of template {template.name!r} "
                    "(--allow-drop): " + self.out.problems[-1].why
                )
        if not metrics:
            return
        declared = {a.name: a.value for a in template.args}
        used = [name for name in BUILTIN_ARGS if name in uses]
        args: list[dict[str, Any]] = [{"name": n} for n in used]
        for name, value in declared.items():
            args.append({"name": name} if value is None else {"name": name, "value": value})
        spec: dict[str, Any] = {"metrics": metrics}
        if args:
            spec["args"] = args
        name = dns_name(self.spec.name, template.name)
        self.templates[template.name] = {
            "apiVersion": API_VERSION,
            "kind": "AnalysisTemplate",
            "metadata": self.metadata(name),
            "spec": spec,
        }
        self.template_args[template.name] = [a["name"] for a in args]

    def ref(self, ref: AnalysisRef, where: str) -> dict[str, Any] | None:
        """The Rollout's analysis block for ``ref`` (None when every template was dropped)."""
        names = [t.template_name for t in ref.templates if t.template_name in self.templates]
        if not names:
            self.out.warnings.append(f"{where}: every metric was left out: no analysis there")
            return None
        values = dict(self.spec.resolve(ref).args)
        values.update(
            version=self.target.ref,
            candidate=self.target.ref,
            stable=self.target.stable,
            env=self.target.env,
        )
        wanted: list[str] = []
        for name in names:
            wanted += [a for a in self.template_args[name] if a not in wanted]
        out: dict[str, Any] = {
            "templates": [{"templateName": self.templates[n]["metadata"]["name"]} for n in names]
        }
        args = [{"name": a, "value": values[a]} for a in wanted if a in values]
        if args:
            out["args"] = args
        return out

    # -- strategies -------------------------------------------------------------------

    def canary(self) -> dict[str, Any]:
        canary = self.spec.strategy.canary
        assert canary is not None
        steps: list[dict[str, Any]] = []
        index: dict[int, int] = {}
        for i, step in enumerate(canary.steps):
            index[i] = len(steps)
            if step.set_weight is not None:
                steps.append({"setWeight": step.set_weight})
                self.check_weight(step.set_weight, f"strategy.canary.steps[{i}]")
            elif step.pause is not None:
                pause = (
                    {}
                    if step.pause.duration is None
                    else {"duration": _seconds(step.pause.duration)}
                )
                steps.append({"pause": pause})
            elif step.analysis is not None:
                block = self.ref(step.analysis, f"strategy.canary.steps[{i}].analysis")
                if block is not None:
                    steps.append({"analysis": block})
        out: dict[str, Any] = {"steps": steps}
        if canary.analysis is not None:
            self.background(out, canary.analysis, index, len(steps))
        out.update(self.routing())
        return out

    def background(
        self, out: dict[str, Any], ref: BackgroundAnalysis, index: Mapping[int, int], total: int
    ) -> None:
        block = self.ref(ref, "strategy.canary.analysis")
        if block is None:
            return
        if ref.starting_step:
            block["startingStep"] = min(index[ref.starting_step], max(total - 1, 0))
        out["analysis"] = block

    def check_weight(self, weight: int, where: str) -> None:
        if self.options.traffic_routing != "none" or weight in (0, 100):
            return
        replicas = self.options.replicas
        pods = replicas * weight / 100
        if pods != int(pods):
            low, high = math.floor(pods), math.ceil(pods)
            self.out.warnings.append(
                f"{where}: setWeight {weight} with {replicas} replica(s) and no traffic router: "
                f"Argo splits by whole pods ({low} or {high} of {replicas}, "
                f"{100 * low // replicas}%-{100 * high // replicas}%), not exactly {weight}%; "
                "give --replicas so that every weight is whole pods, or a --traffic-routing"
            )

    def routing(self) -> dict[str, Any]:
        router = self.options.traffic_routing
        self.out.files.append(("service.yaml", self.service(self.name)))
        if router == "none":
            return {}
        canary_svc, stable_svc = f"{self.name}-canary", f"{self.name}-stable"
        self.out.files.append(("service-canary.yaml", self.service(canary_svc)))
        self.out.files.append(("service-stable.yaml", self.service(stable_svc)))
        routing: dict[str, Any]
        if router == "nginx":
            self.out.files.append(("ingress.yaml", self.ingress(self.name, "nginx", stable_svc)))
            routing = {"nginx": {"stableIngress": self.name}}
        elif router == "alb":
            self.out.files.append(("ingress.yaml", self.ingress(self.name, "alb", self.name)))
            routing = {"alb": {"ingress": self.name, "rootService": self.name, "servicePort": PORT}}
        elif router == "istio":
            routing = {"istio": {"virtualService": {"name": self.name, "routes": ["primary"]}}}
            self.out.notes.append(
                f"Istio: create the VirtualService `{self.name}` with an HTTP route named "
                f"`primary` whose two destinations are the Services `{stable_svc}` (weight 100) "
                f"and `{canary_svc}` (weight 0); Argo sets the weights."
            )
        else:
            routing = {"smi": {"rootService": self.name, "trafficSplitName": self.name}}
        return {"canaryService": canary_svc, "stableService": stable_svc, "trafficRouting": routing}

    def blue_green(self) -> dict[str, Any]:
        bg = self.spec.strategy.blue_green
        assert bg is not None
        preview = f"{self.name}-preview"
        self.out.files.append(("service-active.yaml", self.service(self.name)))
        self.out.files.append(("service-preview.yaml", self.service(preview)))
        if self.options.traffic_routing != "none":
            self.out.warnings.append(
                f"--traffic-routing {self.options.traffic_routing} is for canaries: blue-green "
                "switches its active Service"
            )
        out: dict[str, Any] = {
            "activeService": self.name,
            "previewService": preview,
            "autoPromotionEnabled": bg.auto_promotion_enabled,
            "scaleDownDelaySeconds": bg.scale_down_delay_seconds,
        }
        if bg.auto_promotion_seconds is not None:
            out["autoPromotionSeconds"] = bg.auto_promotion_seconds
        for key, ref in (
            ("prePromotionAnalysis", bg.pre_promotion_analysis),
            ("postPromotionAnalysis", bg.post_promotion_analysis),
        ):
            if ref is not None:
                block = self.ref(ref, f"strategy.blueGreen.{key}")
                if block is not None:
                    out[key] = block
        self.out.notes.append(
            f"Blue-green: the preview is the Service `{preview}` (llmship's gateway serves it "
            f"by the header `X-Llmship-Variant: preview`); clients use `{self.name}`."
        )
        return out

    def shadow(self) -> dict[str, Any] | None:
        shadow = self.spec.strategy.shadow
        assert shadow is not None
        if self.options.traffic_routing != "istio":
            self.problem(
                "strategy.shadow",
                "mirroring needs Argo's setMirrorRoute, which only the Istio router has: "
                "render with --traffic-routing istio, or use --engine llmship",
                droppable=False,
            )
            return None
        if shadow.percent != int(shadow.percent):
            self.problem(
                "strategy.shadow.percent",
                f"{shadow.percent:g}: Argo mirrors a whole percentage; give an integer",
                droppable=False,
            )
            return None
        percent = int(shadow.percent)
        steps: list[dict[str, Any]] = [
            {"setCanaryScale": {"weight": max(percent, 1)}},
            {
                "setMirrorRoute": {
                    "name": MIRROR_ROUTE,
                    "percentage": percent,
                    "match": [{"path": {"prefix": "/"}}],
                }
            },
            {"pause": {"duration": _seconds(shadow.duration)}},
            {"setMirrorRoute": {"name": MIRROR_ROUTE}},
            {"setCanaryScale": {"matchTrafficWeight": True}},
            {"setWeight": 100},
        ]
        out: dict[str, Any] = {"steps": steps}
        block = self.ref(shadow.analysis, "strategy.shadow.analysis")
        if block is not None:
            block["startingStep"] = 1
            out["analysis"] = block
        out.update(self.routing())
        out["trafficRouting"]["managedRoutes"] = [{"name": MIRROR_ROUTE}]
        self.out.notes.append(
            f"Shadow: {percent}% of the requests are mirrored to the candidate for "
            f"{format_duration(shadow.duration)} (Istio), with the analysis in the background; "
            "then the candidate takes all traffic. Unlike llmship, Argo promotes when the "
            "duration ends unless the analysis has failed, even if its metrics are still "
            "counting."
        )
        return out

    def experiment(self) -> None:
        exp = self.spec.strategy.experiment
        assert exp is not None
        self.problem(
            "strategy.experiment",
            f"an A/B experiment that splits users stickily by X-User-Id and picks the winner "
            f"by a significance test on {exp.decision.metric} cannot be expressed in Argo "
            "Rollouts (its Experiment runs variants side by side, each judged by thresholds); "
            "use --engine llmship",
            droppable=False,
        )

    # -- the whole --------------------------------------------------------------------

    def render(self) -> Rendered:
        for i, template in enumerate(self.spec.analysis_templates):
            self.analysis_template(i, template)
        kind = self.spec.strategy.kind
        strategy: dict[str, Any] | None
        if kind == "canary":
            strategy = {"canary": self.canary()}
        elif kind == "blueGreen":
            strategy = {"blueGreen": self.blue_green()}
        elif kind == "shadow":
            shadow = self.shadow()
            strategy = None if shadow is None else {"canary": shadow}
        else:
            self.experiment()
            strategy = None
        if strategy is None:
            return self.out
        rollout = {
            "apiVersion": API_VERSION,
            "kind": "Rollout",
            "metadata": self.metadata(self.name),
            "spec": {
                "replicas": self.options.replicas,
                "selector": {"matchLabels": dict(self.labels)},
                "template": pod_template(self.target, self.options.pod),
                "progressDeadlineSeconds": math.ceil(self.spec.progress_deadline),
                "progressDeadlineAbort": True,
                "strategy": strategy,
            },
        }
        self.out.files.insert(0, ("rollout.yaml", rollout))
        self.out.notes.append(
            f"The Rollout `{self.name}` runs the model servers of {self.target.name}: leave "
            f"{self.target.name} out of the chart's `releases:` and turn the chart's "
            "controllers off (`controller.enabled: false`). On its first apply Argo starts "
            "the template at once, without steps: apply the stable release's rendering first."
        )
        for metric, caveat in self.caveats.items():
            self.out.notes.append(f"PromQL of `{metric}`: {caveat}.")
        for name, argo_template in self.templates.items():
            self.out.files.append((f"analysistemplate-{dns_name(name)}.yaml", argo_template))
        return self.out


def _arguments(metric: Metric) -> Iterable[str]:
    """The template arguments ``metric`` uses (a builtin metric's query: ``version``)."""
    if metric.provider.builtin is not None:
        yield "version"
    for _, text in metric.provider.template_strings():
        yield from placeholders(text)


def _guarded_conditions(metric: Metric) -> dict[str, str]:
    """Conditions of a builtin metric read from a Prometheus vector: ``result[0]`` for
    ``result``, and no sample (fewer than minSamples) Inconclusive whatever they say —
    both conditions are given and neither holds without data."""
    guard = "len(result) > 0"
    success = metric.success_condition and to_argo(metric.success_condition, result="result[0]")
    failure = metric.failure_condition and to_argo(metric.failure_condition, result="result[0]")
    if success and failure:
        pair = (f"{guard} && ({success})", f"{guard} && ({failure})")
    elif success:
        pair = (f"{guard} && ({success})", f"{guard} && !({success})")
    elif failure:
        pair = (f"{guard} && !({failure})", f"{guard} && ({failure})")
    else:
        pair = (guard, "false")
    return {"successCondition": pair[0], "failureCondition": pair[1]}


def render_argo(
    spec: RolloutSpec, target: ReleaseTarget, options: ArgoOptions, *, source: str = "rollout"
) -> Rendered:
    """Argo Rollouts objects for ``spec`` rolling ``target`` out.

    The result's ``problems`` list what Argo cannot express; the caller refuses when
    any is not droppable, or any is and ``allow_drop`` is off (droppable metrics are
    then already left out, with a warning each).
    """
    if options.traffic_routing not in ROUTERS:
        raise ValueError(f"traffic routing {options.traffic_routing!r}: one of {ROUTERS}")
    return _Renderer(spec, target, options, source).render()
