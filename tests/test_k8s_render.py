"""`llmship k8s render`: rollout specs as Argo Rollouts or llmship-controller manifests,
checked by the real schemas (llmship.k8s.validate) and by promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from _cli import Run, cli_runner
from _monitoring import check_rules
from _registry import chat_registry
from llmship.analysis.stats import BUILTIN_METRICS
from llmship.k8s.conditions import to_argo
from llmship.k8s.promql import builtin_query
from llmship.k8s.validate import validate_objects
from llmship.registry import Registry
from llmship.rollout import parse_rollout

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "kubernetes-rollouts.md"
CHART = ROOT / "src" / "llmship" / "k8s" / "chart"
SPECS = sorted(p.stem for p in (ROOT / "rollouts").glob("*.yaml"))
CANDIDATE = "chat@1.1.0"
SEED_STEPS = [
    {"setWeight": 20},
    {"pause": {}},
    {"setWeight": 40},
    {"pause": {"duration": 60}},
    {"setWeight": 100},
]


@pytest.fixture
def registry(cli_home: Path) -> Iterator[Registry]:
    """chat@1.0.0 (production in dev) and chat@1.1.0, in the command line's registry;
    the shipped specs under ./rollouts."""
    shutil.copytree(ROOT / "rollouts", cli_home / "rollouts")
    with chat_registry(cli_home / "state" / "registry.db") as reg:
        yield reg


@pytest.fixture
def run(registry: Registry) -> Run:
    return cli_runner()


def render(run: Run, spec: str, out: str, *args: str, code: int = 0) -> str:
    result = run(
        "k8s",
        "render",
        "--rollout",
        f"rollouts/{spec}.yaml",
        "--release",
        CANDIDATE,
        "--out",
        out,
        *args,
        code=code,
    )
    return result.output


def objects(out: Path) -> dict[str, dict[str, Any]]:
    """Every manifest written, by file name (chart values under helm/ excluded)."""
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))}


def valid(out: Path) -> dict[str, dict[str, Any]]:
    found = objects(out)
    assert found
    assert validate_objects(list(found.items())) == []
    return found


def by_kind(found: dict[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in found.values() if o["kind"] == kind]


def queries(found: dict[str, dict[str, Any]]) -> list[str]:
    return [
        m["provider"]["prometheus"]["query"]
        for t in by_kind(found, "AnalysisTemplate")
        for m in t["spec"]["metrics"]
        if "prometheus" in m["provider"]
    ]


def promtool_check(exprs: list[str], tmp_path: Path) -> None:
    """Every expression, with Argo's {{args.x}} filled in, parses (promtool check rules)."""
    filled = [re.sub(r"\{\{args\.version\}\}", CANDIDATE, e) for e in exprs]
    assert not any("{{" in e for e in filled)
    done = check_rules(filled, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(filled)} rules found" in done.stdout


# -- Argo --------------------------------------------------------------------------------


def test_the_seed_canary_renders_to_the_seeds_manifest(run: Run, cli_home: Path) -> None:
    output = render(run, "seed-canary", "out", "--engine", "argo", "--replicas", "5")
    assert "rendered rollout seed-canary of chat@1.1.0 (from chat@1.0.0 in dev)" in output
    found = valid(cli_home / "out")
    (rollout,) = by_kind(found, "Rollout")
    assert rollout["apiVersion"] == "argoproj.io/v1alpha1"
    assert rollout["spec"]["replicas"] == 5
    canary = rollout["spec"]["strategy"]["canary"]
    assert canary["steps"] == SEED_STEPS
    assert canary["analysis"] == {
        "templates": [{"templateName": "seed-canary-health"}],
        "args": [{"name": "version", "value": CANDIDATE}],
    }
    (container,) = rollout["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "model"
    assert container["args"][:3] == ["serve", "--release", CANDIDATE]
    assert container["args"][-1] == "http://$(POD_IP):8000"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["LLMSHIP_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "llmship-secrets",
        "key": "database-url",
    }
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (template,) = by_kind(found, "AnalysisTemplate")
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    assert set(metrics) == {"error-rate", "latency-p95"}
    assert metrics["error-rate"]["interval"] == "15s"
    assert metrics["error-rate"]["failureLimit"] == 1
    assert metrics["latency-p95"]["failureLimit"] == 2
    assert metrics["error-rate"]["successCondition"] == "len(result) > 0 && (result[0] <= 0.05)"
    assert "histogram_quantile(0.95" in metrics["latency-p95"]["provider"]["prometheus"]["query"]
    assert template["spec"]["args"] == [{"name": "version"}]
    notes = (cli_home / "out" / "NOTES.md").read_text()
    assert "Retry on stable" in notes and "bucket" in notes


@pytest.mark.parametrize("engine", ["argo", "llmship"])
@pytest.mark.parametrize("spec", SPECS)
def test_every_shipped_spec_renders_or_is_refused(
    run: Run, cli_home: Path, spec: str, engine: str
) -> None:
    refused = {
        "ab-feedback": "strategy.experiment: an A/B experiment that splits users stickily",
        "shadow": "strategy.shadow: mirroring needs Argo's setMirrorRoute",
    }
    out = cli_home / "out"
    if engine == "argo" and spec in refused:
        output = render(run, spec, "out", "--engine", engine, "--replicas", "5", code=2)
        assert f"rollouts/{spec}.yaml: {refused[spec]}" in output
        assert not out.exists()
        return
    render(run, spec, "out", "--engine", engine, "--replicas", "5")
    found = valid(out)
    assert "objects valid" in run("k8s", "validate", "out").output  # as a user checks it
    if engine == "argo":
        assert len(by_kind(found, "Rollout")) == 1
        return
    values = yaml.safe_load((out / "helm" / "values-rollout.yaml").read_text())
    chart_schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validate(values, chart_schema)  # what `helm upgrade -f` will check
    assert values["releases"] == [
        {"name": "chat", "version": "1.0.0"},
        {"name": "chat", "version": "1.1.0", "replicaCount": 5},
    ]
    (job,) = by_kind(found, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:6] == [
        "rollout",
        "start",
        "/spec/rollout.yaml",
        "--candidate",
        CANDIDATE,
        "--env",
    ]
    (config,) = by_kind(found, "ConfigMap")
    shipped = yaml.safe_load((ROOT / "rollouts" / f"{spec}.yaml").read_text())
    assert parse_rollout(yaml.safe_load(config["data"]["rollout.yaml"])) == parse_rollout(shipped)


def test_blue_green_gets_active_and_preview_services(run: Run, cli_home: Path) -> None:
    render(run, "bluegreen", "out", "--replicas", "2", "--namespace", "llm")
    found = valid(cli_home / "out")
    (rollout,) = by_kind(found, "Rollout")
    bg = rollout["spec"]["strategy"]["blueGreen"]
    services = {s["metadata"]["name"]: s for s in by_kind(found, "Service")}
    assert set(services) == {bg["activeService"], bg["previewService"]}
    assert bg["autoPromotionEnabled"] is True
    assert bg["autoPromotionSeconds"] == 30
    assert bg["scaleDownDelaySeconds"] == 120
    templates = {t["metadata"]["name"] for t in by_kind(found, "AnalysisTemplate")}
    assert bg["prePromotionAnalysis"]["templates"] == [{"templateName": "bluegreen-smoke"}]
    assert bg["postPromotionAnalysis"]["templates"] == [{"templateName": "bluegreen-live"}]
    assert templates == {"bluegreen-smoke", "bluegreen-live"}
    selector = rollout["spec"]["selector"]["matchLabels"]
    for service in services.values():
        assert service["spec"]["selector"] == selector
        assert service["metadata"]["namespace"] == "llm"
    smoke = next(t for t in by_kind(found, "AnalysisTemplate") if "smoke" in t["metadata"]["name"])
    errors = smoke["spec"]["metrics"][0]
    assert errors["initialDelay"] == "25s"
    assert ">= 5" in errors["provider"]["prometheus"]["query"]  # minSamples: 5


@pytest.mark.parametrize(
    ("router", "extra"),
    [
        ("none", set()),
        ("nginx", {"service-canary.yaml", "service-stable.yaml", "ingress.yaml"}),
        ("alb", {"service-canary.yaml", "service-stable.yaml", "ingress.yaml"}),
        ("istio", {"service-canary.yaml", "service-stable.yaml"}),
        ("smi", {"service-canary.yaml", "service-stable.yaml"}),
    ],
)
def test_canary_traffic_routing(run: Run, cli_home: Path, router: str, extra: set[str]) -> None:
    render(run, "chat-canary", "out", "--traffic-routing", router, "--replicas", "4")
    found = valid(cli_home / "out")
    assert set(found) == {
        "rollout.yaml",
        "service.yaml",
        "analysistemplate-errors.yaml",
        *extra,
    }
    canary = found["rollout.yaml"]["spec"]["strategy"]["canary"]
    if router == "none":
        assert "trafficRouting" not in canary
        return
    assert list(canary["trafficRouting"]) == [router]
    assert canary["canaryService"] == found["service-canary.yaml"]["metadata"]["name"]
    assert canary["stableService"] == found["service-stable.yaml"]["metadata"]["name"]
    if router == "nginx":
        assert (
            canary["trafficRouting"]["nginx"]["stableIngress"]
            == (found["ingress.yaml"]["metadata"]["name"])
        )


def test_a_weight_the_pods_cannot_hit_is_warned_about(run: Run, cli_home: Path) -> None:
    output = render(run, "chat-canary", "out", "--replicas", "5")
    assert "steps[3]: setWeight 50 with 5 replica(s) and no traffic router" in output
    assert "setWeight 20" not in output  # 1 pod of 5: exact


def test_shadow_with_istio_mirrors_and_drops_what_argo_cannot_measure(
    run: Run, cli_home: Path, tmp_path: Path
) -> None:
    refused = render(run, "shadow", "out", "--traffic-routing", "istio", code=2)
    assert "metric 'answer-similarity' is shadow_similarity" in refused
    assert "--allow-drop" in refused
    output = render(run, "shadow", "out", "--traffic-routing", "istio", "--allow-drop")
    assert "left out metric 'answer-similarity'" in output
    found = valid(cli_home / "out")
    canary = found["rollout.yaml"]["spec"]["strategy"]["canary"]
    assert canary["steps"][1]["setMirrorRoute"]["percentage"] == 10
    assert canary["steps"][2] == {"pause": {"duration": 300}}
    assert canary["steps"][-1] == {"setWeight": 100}
    assert canary["analysis"]["startingStep"] == 1
    assert canary["trafficRouting"]["managedRoutes"] == [{"name": "llmship-shadow"}]
    (template,) = by_kind(found, "AnalysisTemplate")
    assert [m["name"] for m in template["spec"]["metrics"]] == ["shadow-errors"]
    promtool_check(queries(found), tmp_path)


GOODPUT_SPEC = """\
name: good-canary
strategy:
  canary:
    steps: [{setWeight: 20}, {pause: {duration: 10s}}, {setWeight: 100}]
    analysis: {templates: [{templateName: latency}]}
analysisTemplates:
  - name: latency
    metrics:
      - name: goodput
        interval: 10s
        successCondition: result >= 0.95
        provider: {builtin: {metric: goodput, slo: {ttft: 1s, tpot: 50ms, e2e: 20s}}}
      - name: tpot
        interval: 10s
        successCondition: result <= 0.05
        provider: {builtin: {metric: tpot_p95}}
"""


def test_goodput_is_refused_under_argo_and_tpot_reads_its_histogram(
    run: Run, cli_home: Path, tmp_path: Path
) -> None:
    (cli_home / "rollouts" / "good-canary.yaml").write_text(GOODPUT_SPEC)
    refused = render(run, "good-canary", "out", code=2)
    assert "metric 'goodput' is goodput" in refused and "tpot_p95" in refused
    output = render(run, "good-canary", "out", "--allow-drop")
    assert "left out metric 'goodput'" in output
    found = valid(cli_home / "out")
    (template,) = by_kind(found, "AnalysisTemplate")
    assert [m["name"] for m in template["spec"]["metrics"]] == ["tpot"]
    (query,) = queries(found)
    assert "llm_time_per_output_token_seconds_bucket" in query
    promtool_check([query], tmp_path)
    with pytest.raises(ValueError, match="only the llmship gateway"):
        builtin_query("goodput", 60)


def test_compare_with_stable_is_refused_even_with_allow_drop_for_an_experiment(
    run: Run, cli_home: Path
) -> None:
    output = render(run, "ab-feedback", "out", "--allow-drop", code=2)
    assert "strategy.experiment" in output
    assert "errors-vs-stable" not in output  # dropped, the experiment still refused
    assert not (cli_home / "out").exists()


# -- PromQL ------------------------------------------------------------------------------


def test_every_promql_rendered_parses(run: Run, cli_home: Path, tmp_path: Path) -> None:
    exprs = [builtin_query(m, 90.5).guarded(3) for m in BUILTIN_METRICS if m != "goodput"]
    for spec in ("seed-canary", "chat-canary", "bluegreen"):
        render(run, spec, f"out-{spec}")
        exprs += queries(objects(cli_home / f"out-{spec}"))
    promtool_check(exprs, tmp_path)


def _expr(metric: str, min_samples: int = 1) -> str:
    return builtin_query(metric, 60).guarded(min_samples).replace("{{args.version}}", CANDIDATE)


def test_the_promql_gives_the_builtin_values(tmp_path: Path) -> None:
    """promtool evaluates the queries over series as the model server and gateway write
    them: 1 request in 10 fails; every latency in (0.5, 1] s; ratings 4 and 2."""
    sel = 'version="chat@1.1.0",route="/v1/chat/completions",method="POST"'
    latency = 'model_latency_seconds_{}{{version="chat@1.1.0",route="/v1/chat/completions"'
    bucket = latency.format("bucket")
    rating = 'llmship_feedback_ratings_total{version="chat@1.1.0",variant="canary"'
    series = [
        (f'http_requests_total{{{sel},status="200"}}', "0+9x8"),
        (f'http_requests_total{{{sel},status="500"}}', "0+1x8"),
        # the gateway's copy of the same requests (a variant): not counted twice
        (f'http_requests_total{{{sel},status="500",variant="canary"}}', "0+50x8"),
        (f'{bucket},le="0.5"}}', "0+0x8"),
        (f'{bucket},le="1"}}', "0+10x8"),
        (f'{bucket},le="+Inf"}}', "0+10x8"),
        (latency.format("count") + "}", "0+10x8"),
        (f'{rating},rating="4"}}', "0+2x8"),
        (f'{rating},rating="2"}}', "0+2x8"),
    ]
    cases = [
        (_expr("error_rate"), 0.1),
        (_expr("latency_p95"), 0.975),
        (_expr("feedback_mean"), 3.0),
        (_expr("thumbs_up_rate"), None),  # no thumbs: no sample
        (_expr("error_rate", min_samples=100), None),  # 40 requests a minute: too few
    ]
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "2m",
                        "exp_samples": [] if value is None else [{"labels": "{}", "value": value}],
                    }
                    for expr, value in cases
                ],
            }
        ],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("ours", "argo"),
    [
        ("result <= 0.05", "result[0] <= 0.05"),
        ("0.5 < result < 2", "(0.5 < result[0] && result[0] < 2)"),
        ("!result > 1", "!(result[0] > 1)"),
        ("result > 1 and not isNaN(result)", "(result[0] > 1) && (!isNaN(result[0]))"),
        ("default(result, 0) >= -1", "default(result[0], 0) >= (-1)"),
        ("result in ['ok', true, nil]", 'result[0] in ["ok", true, nil]'),
    ],
)
def test_conditions_in_argos_language(ours: str, argo: str) -> None:
    assert to_argo(ours, result="result[0]") == argo


# -- values and bad input ----------------------------------------------------------------


def test_values_give_image_secret_and_gpu_resources(run: Run, cli_home: Path) -> None:
    values = {
        "image": {"repository": "registry.local/llmship", "tag": "0.2.0"},
        "existingSecret": "team-llm",
        "releases": [
            {
                "name": "chat",
                "version": "1.0.0",
                "replicaCount": 3,
                "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "16Gi"}},
            }
        ],
    }
    (cli_home / "values.yaml").write_text(yaml.safe_dump(values))
    render(run, "seed-canary", "out", "--values", "values.yaml")
    found = valid(cli_home / "out")
    rollout = found["rollout.yaml"]
    assert rollout["spec"]["replicas"] == 3
    (container,) = rollout["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.local/llmship:0.2.0"
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 1, "memory": "16Gi"}}
    env = {e["name"]: e for e in container["env"]}
    assert env["LLMSHIP_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "team-llm"


def test_bad_values_are_refused_naming_the_field(run: Run, cli_home: Path) -> None:
    (cli_home / "values.yaml").write_text("replicaCount: two\n")
    output = render(run, "seed-canary", "out", "--values", "values.yaml", code=2)
    assert "values.yaml: replicaCount: 'two' is not of type 'integer'" in output
    assert not (cli_home / "out").exists()


@pytest.mark.parametrize(
    ("release", "message"),
    [
        ("chat@9.9.9", "no release chat@9.9.9"),
        ("chat@1.0.0", "chat@1.0.0 is already the production release of dev"),
    ],
    ids=["unknown", "production"],
)
def test_a_release_that_cannot_be_the_candidate_writes_nothing(
    run: Run, cli_home: Path, release: str, message: str
) -> None:
    output = run(
        "k8s",
        "render",
        *("--rollout", "rollouts/seed-canary.yaml", "--release", release, "--out", "out"),
        code=2,
    ).output
    assert message in output
    assert not (cli_home / "out").exists()


def test_an_environment_without_production_is_refused(run: Run, cli_home: Path) -> None:
    output = render(run, "seed-canary", "out", "--env", "staging", code=2)
    assert "staging has no production release" in output
    assert not (cli_home / "out").exists()


def test_a_folder_that_is_not_empty_needs_force(run: Run, cli_home: Path) -> None:
    out = cli_home / "out"
    out.mkdir()
    (out / "analysistemplate-old.yaml").write_text("keep: me\n")
    output = render(run, "seed-canary", "out", code=2)
    assert "--out out: the folder is not empty; give --force" in output
    assert (out / "analysistemplate-old.yaml").read_text() == "keep: me\n"
    render(run, "seed-canary", "out", "--force")
    assert not (out / "analysistemplate-old.yaml").exists()
    valid(out)


# -- the docs ----------------------------------------------------------------------------


def _doc_commands() -> tuple[list[str], list[tuple[str, str]]]:
    """`llmship k8s render` lines of the doc's bash blocks (they succeed), and of its text
    blocks (`$ ` lines, each followed by the start of its error)."""
    text = DOC.read_text()
    ok = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S)
        for line in block.splitlines()
        if line.strip().startswith("llmship k8s render")
    ]
    failing = []
    for block in re.findall(r"```text\n(.*?)```", text, re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ llmship k8s render"):
                failing.append((line[2:], lines[i + 1].removeprefix("error: ")))
    return ok, failing


def test_every_render_command_in_the_docs_runs_as_written(run: Run, cli_home: Path) -> None:
    ok, failing = _doc_commands()
    assert len(ok) >= 5 and len(failing) >= 2
    for command in ok:
        words = command.split()[1:]
        run(*words)
        out = cli_home / words[words.index("--out") + 1]
        valid(out)
    for command, error in failing:
        words = command.split()[1:]
        output = run(*words, code=2).output
        assert error in output, (command, output)
        assert not (cli_home / words[words.index("--out") + 1]).exists()


def test_the_queries_count_every_route_the_gateway_routes() -> None:
    from llmship.gateway.proxied import PROXIED
    from llmship.k8s.promql import GENERATION_ROUTES

    assert set(GENERATION_ROUTES.split("|")) == set(PROXIED)
