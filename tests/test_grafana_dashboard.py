"""The shipped Grafana dashboard and Prometheus rules: every PromQL expression parses
(``promtool``), and every metric they name is one that a real scrape of our processes
shows: a real gateway, controller and model servers (``llmship serve`` with the
``openai`` backend in front of a tiny local upstream), driven through one request per
release, a rating, a thumbs and a canary with a measured analysis."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from _monitoring import check_rules
from _procs import FakeUpstream, GatewayProcess, LlmshipProcess, ModelServer, free_port
from llmship.monitoring import asset
from llmship.registry import Registry
from llmship.release.spec import parse_spec
from llmship.rollout import ops, parse_rollout

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD: dict[str, Any] = json.loads(asset("grafana-dashboard.json").read_text())
RULE_FILES = ("rules.yml", "recording-rules.yml")
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$version": ".*",
    "$env": ".*",
}


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expression) of every panel target of the dashboard."""
    return [
        (f"panel {panel['title']!r} target {target['refId']}", target["expr"])
        for panel in DASHBOARD["panels"]
        for target in panel.get("targets", [])
    ]


def rule_exprs() -> list[tuple[str, str]]:
    """(where, expression) of every alerting and recording rule shipped."""
    found = []
    for name in RULE_FILES:
        for group in yaml.safe_load(asset(name).read_text())["groups"]:
            for rule in group["rules"]:
                found.append((f"{name} {rule.get('alert') or rule['record']}", rule["expr"]))
    return found


def recorded() -> set[str]:
    """The series our recording rules define."""
    groups = yaml.safe_load(asset("recording-rules.yml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"]}


def substituted(expr: str) -> str:
    """``expr`` with Grafana's variables given values, as Grafana sends it."""
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


EXPRS = dashboard_exprs() + rule_exprs()

# -- the dashboard itself -------------------------------------------------------------


def test_the_dashboard_has_a_fixed_uid_and_a_prometheus_datasource_variable() -> None:
    assert DASHBOARD["uid"] == "llmship"
    assert DASHBOARD["schemaVersion"] >= 39
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"env", "version"} <= set(variables)
    assert (ROOT / "deploy" / "grafana" / "llmship.json").resolve() == Path(
        str(asset("grafana-dashboard.json"))
    )


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    wanted = {"type": "prometheus", "uid": "${datasource}"}
    for panel in DASHBOARD["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == wanted, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == wanted, panel["title"]
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == wanted, variable["name"]


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    for name in (
        "llmship:requests:rate1m",
        "llmship:errors:ratio1m",
        "llmship:latency_seconds:p95_1m",
        "llmship:ttft_seconds:p95_1m",
        "llmship:tokens_per_second:mean1m",
        "llmship_rollout_weight",
        "llmship_rollout_step",
        "llmship_rollout_info",
        "llmship:feedback_rating:mean1h",
        "llmship_analysis_metric_value",
        "llmship_analysis_metric_phase",
    ):
        assert name in exprs, name
    kinds = {panel["type"] for panel in DASHBOARD["panels"]}
    assert {"timeseries", "stat", "state-timeline"} <= kinds
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))


# -- every expression parses ---------------------------------------------------------


def test_every_expression_parses_with_promtool(tmp_path: Path) -> None:
    done = check_rules([substituted(expr) for _, expr in EXPRS], tmp_path)
    where = "\n".join(f"x_{i}: {w}" for i, (w, _) in enumerate(EXPRS))
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{where}"
    assert f"SUCCESS: {len(EXPRS)} rules found" in done.stdout


def test_a_broken_expression_is_caught(tmp_path: Path) -> None:
    done = check_rules(["sum by (version (rate(http_requests_total[1m]))"], tmp_path)
    assert done.returncode != 0


# -- the metric names an expression uses ---------------------------------------------

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_NAME = re.compile(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects: identifiers that are neither functions,
    keywords, label names (in matchers and in by/on/... lists) nor durations."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (version) (rate(http_requests_total{status=~"5.."}[5m]))',
            {"http_requests_total"},
        ),
        (
            "histogram_quantile(0.95, sum by (le) (rate(llm_ttft_seconds_bucket[5m]))) > 2",
            {"llm_ttft_seconds_bucket"},
        ),
        ("llmship_registry_up == 0", {"llmship_registry_up"}),
        ('llmship:requests:rate1m{version=~".*"}', {"llmship:requests:rate1m"}),
        ("a_total / on (env) group_left b_info", {"a_total", "b_info"}),
        ('max by (env) (x{phase="Paused"} or 2 * y offset 5m)', {"x", "y"}),
        ('label_replace(up, "a", "$1", "b", "(.*)")', {"up"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def used_names() -> dict[str, str]:
    """Every metric name used by the dashboard and the rules (minus the series the
    recording rules define), with where it is first used."""
    own = recorded()
    used: dict[str, str] = {}
    for where, expr in EXPRS:
        for name in metric_names(substituted(expr)):
            if name in own:
                continue
            assert ":" not in name, f"{where}: {name} is no recording rule of ours"
            used.setdefault(name, where)
    return used


# -- a real scrape ---------------------------------------------------------------------

TOKEN = "dashboard-token"
ENV = "dev"
STABLE, CANDIDATE = "chat@1.0.0", "chat@1.1.0"
PROC_ENV = {"LLMSHIP_ADMIN_TOKEN": TOKEN, "LLMSHIP_ENDPOINT_MAX_AGE": "3600"}
CANARY = {
    "name": "dashboard-canary",
    "strategy": {
        "canary": {
            "steps": [{"setWeight": 50}, {"pause": {}}],
            "analysis": {"templates": [{"templateName": "traffic"}]},
        }
    },
    "analysisTemplates": [
        {
            "name": "traffic",
            "metrics": [
                {
                    "name": "requests",
                    "interval": "1s",
                    "successCondition": "result >= 0",
                    "provider": {"builtin": {"metric": "request_count", "window": "30s"}},
                }
            ],
        }
    ],
}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def scrape(url: str) -> tuple[set[str], dict[str, list[Any]]]:
    """The sample names of ``url`` (counted also for families declared without a
    sample yet, with the names such a family's samples take), and the samples by name."""
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    names: set[str] = set()
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(r.text):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names |= {family.name + s for s in suffixes.get(family.type, [""])}
        for s in family.samples:
            names.add(s.name)
            samples.setdefault(s.name, []).append(s)
    return names, samples


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Our processes after one request per release, feedback and a measured canary:
    each one's scrape (sample names, and samples by name)."""
    workdir = tmp_path_factory.mktemp("dashboard")
    home = workdir / ".llmship"
    registry = Registry.open(f"sqlite:///{home / 'registry.db'}", home=home)
    upstream = FakeUpstream()
    for ref in (STABLE, CANDIDATE):
        name, version = ref.split("@")
        spec = {
            "name": name,
            "version": version,
            "backend": "openai",
            "model": {"base_url": upstream.url, "id": "fake"},
        }
        registry.register(parse_spec(spec), actor="test")
    registry.set_alias(ENV, "production", STABLE, actor="test", reason="first")
    servers = [
        ModelServer(workdir, "--release", ref, "--env", ENV, env=PROC_ENV)
        for ref in (STABLE, CANDIDATE)
    ]
    gateway = GatewayProcess(workdir, env=PROC_ENV)
    metrics_port = free_port()
    args = ["controller", "--env", ENV, "--interval", "200ms", "--gateway-url", gateway.url]
    controller = LlmshipProcess([*args, "--metrics-port", str(metrics_port)], workdir, PROC_ENV)
    controller_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        for server in servers:
            server.wait_ready()
        gateway.wait_ready()
        controller.wait_http(controller_metrics, 60)
        # Given a canary at 50% with an analysis measured every second
        ops.start(registry, parse_rollout(CANARY), CANDIDATE, env=ENV, actor="test")
        wait_until(lambda: registry.get_traffic(ENV).canary_weight == 50, "the canary at 50%")
        # When both releases answer, and an answer gets a rating and a thumbs
        versions: dict[str, str] = {}
        admin = {"Authorization": f"Bearer {TOKEN}"}

        def answer_both() -> bool:
            r = httpx.post(
                f"{gateway.url}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, timeout=30
            )
            assert r.status_code == 200, r.text
            versions.setdefault(r.headers["x-llmship-version"], r.headers["x-request-id"])
            return len(versions) == 2

        wait_until(answer_both, "an answer from each release")
        feedback = {"query_id": versions[CANDIDATE], "rating": 4, "thumbs": "up"}
        r = httpx.post(f"{gateway.url}/feedback", json=feedback, timeout=30)
        assert r.status_code == 200, r.text
        wait_until(
            lambda: "llmship_analysis_metric_value" in scrape(controller_metrics)[1],
            "a measurement on the controller's /metrics",
        )
        r = httpx.get(f"{gateway.url}/api/v1/targets", headers=admin, timeout=10)
        assert r.status_code == 200, r.text
        yield {
            "gateway": scrape(f"{gateway.url}/metrics"),
            "controller": scrape(controller_metrics),
            "targets": r.json(),
            **{
                ref: scrape(f"{s.url}/metrics")
                for ref, s in zip((STABLE, CANDIDATE), servers, strict=True)
            },
        }
    finally:
        for proc in (controller, gateway, *servers):
            proc.stop()
        registry.close()
        upstream.close()


def test_every_metric_the_dashboard_and_rules_use_is_in_a_real_scrape(
    scraped: dict[str, Any],
) -> None:
    shown = set().union(*(scraped[k][0] for k in ("gateway", "controller", STABLE, CANDIDATE)))
    missing = {name: where for name, where in used_names().items() if name not in shown}
    assert not missing, f"used but scraped from none of our processes: {missing}"


def test_the_new_series_carry_their_labels_and_values(scraped: dict[str, Any]) -> None:
    _, gateway = scraped["gateway"]
    [rating] = gateway["llmship_feedback_ratings_total"]
    assert rating.labels == {"version": CANDIDATE, "variant": "canary", "rating": "4"}
    assert rating.value == 1
    [thumb] = gateway["llmship_feedback_thumbs_total"]
    assert thumb.labels == {"version": CANDIDATE, "variant": "canary", "thumb": "up"}

    _, controller = scraped["controller"]
    [info] = controller["llmship_rollout_info"]
    assert (
        info.labels
        == {
            "env": ENV,
            "rollout": "dashboard-canary",
            "strategy": "canary",
            "release": CANDIDATE,
            "phase": "Progressing",
        }
        or info.labels["phase"] == "Paused"
    )
    weights = {s.labels["version"]: s.value for s in controller["llmship_rollout_weight"]}
    assert weights == {CANDIDATE: 50, STABLE: 50}
    [value] = controller["llmship_analysis_metric_value"]
    assert value.labels["metric"] == "requests" and value.value >= 0
    phases = [s.labels["phase"] for s in controller["llmship_analysis_metric_phase"]]
    assert phases in (["Running"], ["Successful"])
    [leader] = controller["llmship_controller_leader"]
    assert (leader.labels, leader.value) == ({"env": ENV}, 1)


def test_the_targets_endpoint_lists_the_model_servers_prometheus_scrapes(
    scraped: dict[str, Any],
) -> None:
    releases = sorted(group["labels"]["release"] for group in scraped["targets"])
    assert releases == [STABLE, CANDIDATE]
    for group in scraped["targets"]:
        [target] = group["targets"]
        names, _ = scrape(f"http://{target}/metrics")
        assert "http_requests_total" in names
