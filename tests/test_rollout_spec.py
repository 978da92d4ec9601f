"""Rollout specs (``rollouts/*.yaml``): the public file shape and its error messages."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from llmship.analysis import AnalysisTemplate
from llmship.errors import SpecError
from llmship.rollout import RolloutSpec, load_rollout, parse_rollout

ROOT = Path(__file__).resolve().parent.parent
ROLLOUTS = sorted((ROOT / "rollouts").glob("*.yaml"))

CHAT_CANARY = """\
name: chat-canary
strategy:
  canary:
    steps:
      - setWeight: 20
      - pause: {duration: 10s}
      - analysis: {templates: [{templateName: errors}]}
      - setWeight: 50
      - pause: {duration: 10s}
      - setWeight: 100
    analysis:                      # background analysis, from the first step on
      templates: [{templateName: errors}]
analysisTemplates:
  - name: errors
    metrics:
      - name: error-rate
        initialDelay: 10s         # some requests at the new weight first
        interval: 5s
        count: 3
        failureLimit: 1
        successCondition: result <= 0.05
        provider: {builtin: {metric: error_rate, window: 30s}}
"""


def test_every_example_file_parses() -> None:
    names = {p.name for p in ROLLOUTS}
    assert {
        "seed-canary.yaml",
        "chat-canary.yaml",
        "bluegreen.yaml",
        "ab-feedback.yaml",
        "shadow.yaml",
    } <= names
    kinds = set()
    for path in ROLLOUTS:
        spec = load_rollout(path)
        assert spec.name == path.stem
        kinds.add(spec.strategy.kind)
        assert parse_rollout(spec.to_dict()) == spec  # round trip
        assert parse_rollout(yaml.safe_load(spec.to_yaml())) == spec
    assert kinds == {"canary", "blueGreen", "experiment", "shadow"}


def test_the_public_example_parses_as_written() -> None:
    spec = parse_rollout(yaml.safe_load(CHAT_CANARY), source="chat-canary.yaml")
    assert (ROOT / "rollouts" / "chat-canary.yaml").read_text() == CHAT_CANARY
    assert spec.name == "chat-canary"
    assert spec.progress_deadline == 600.0  # the 10m default
    canary = spec.strategy.canary
    assert canary is not None and spec.strategy.kind == "canary"
    assert [s.kind for s in canary.steps] == [
        "setWeight",
        "pause",
        "analysis",
        "setWeight",
        "pause",
        "setWeight",
    ]
    assert [s.set_weight for s in canary.steps if s.set_weight is not None] == [20, 50, 100]
    assert canary.steps[1].pause is not None and canary.steps[1].pause.duration == 10.0
    assert canary.analysis is not None and canary.analysis.starting_step is None
    run = spec.resolve(canary.analysis)
    (metric,) = run.metrics
    assert (metric.name, metric.interval, metric.count, metric.failure_limit) == (
        "error-rate",
        5.0,
        3,
        1,
    )
    assert metric.success_condition == "result <= 0.05"
    builtin = metric.provider.builtin
    assert builtin is not None and (builtin.metric, builtin.window) == ("error_rate", 30.0)
    assert [path for path, _ in spec.analysis_refs()] == [
        "strategy.canary.steps[2].analysis",
        "strategy.canary.analysis",
    ]


def test_the_seed_canary() -> None:
    spec = load_rollout(ROOT / "rollouts" / "seed-canary.yaml")
    steps = spec.strategy.canary.steps  # type: ignore[union-attr]
    assert [(s.kind, s.set_weight) for s in steps if s.kind == "setWeight"] == [
        ("setWeight", 20),
        ("setWeight", 40),
        ("setWeight", 100),
    ]
    pauses = [s.pause.duration for s in steps if s.pause is not None]
    assert pauses == [None, 60.0]  # wait for a person, then 60 seconds


def test_other_strategies_read_as_documented() -> None:
    bg = load_rollout(ROOT / "rollouts" / "bluegreen.yaml").strategy.blue_green
    assert bg is not None and bg.auto_promotion_enabled and bg.auto_promotion_seconds == 30
    assert bg.pre_promotion_analysis and bg.post_promotion_analysis
    assert bg.scale_down_delay_seconds == 120
    ab = load_rollout(ROOT / "rollouts" / "ab-feedback.yaml").strategy.experiment
    assert ab is not None and ab.duration == 1800.0
    assert (ab.stable_variant.name, ab.candidate_variant.name) == ("A", "B")
    assert ab.decision.metric == "feedback_mean" and ab.decision.effective_higher_is_better
    assert (ab.decision.alpha, ab.decision.min_samples) == (0.05, 30)
    shadow = load_rollout(ROOT / "rollouts" / "shadow.yaml").strategy.shadow
    assert shadow is not None and (shadow.percent, shadow.duration) == (10.0, 300.0)


# -- defaults and small forms --------------------------------------------------------

MINIMAL: dict[str, Any] = {"name": "r", "strategy": {"canary": {"steps": [{"setWeight": 100}]}}}


def with_(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base`` (MINIMAL) with ``value`` set at the dotted ``path`` (``a.b.0.c``)."""
    data = copy.deepcopy(base if base is not None else MINIMAL)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


def test_defaults() -> None:
    spec = parse_rollout(MINIMAL)
    assert spec.progress_deadline == 600.0 and spec.description is None
    assert spec.analysis_templates == []
    bg = parse_rollout({"name": "b", "strategy": {"blueGreen": {}}}).strategy.blue_green
    assert bg is not None
    assert (bg.auto_promotion_enabled, bg.auto_promotion_seconds) == (True, None)
    assert bg.scale_down_delay_seconds == 30


@pytest.mark.parametrize(
    ("pause", "seconds"),
    [
        ({}, None),
        ({"duration": "30s"}, 30.0),
        ({"duration": 60}, 60.0),
        ({"duration": "1h"}, 3600.0),
    ],
)
def test_pause_forms(pause: dict[str, Any], seconds: float | None) -> None:
    spec = parse_rollout(with_("strategy.canary.steps", [{"pause": pause}]))
    assert spec.strategy.canary.steps[0].pause.duration == seconds  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("variants", "stable", "candidate"),
    [
        ([{"name": "A", "weight": 50}, {"name": "B", "weight": 50}], "A", "B"),
        (
            [{"name": "A", "weight": 50, "release": "candidate"}, {"name": "B", "weight": 50}],
            "B",
            "A",
        ),
        ([{"name": "x", "weight": 90}, {"name": "y", "weight": 10, "release": "stable"}], "y", "x"),
    ],
)
def test_experiment_variants(variants: list[dict[str, Any]], stable: str, candidate: str) -> None:
    data = {
        "name": "ab",
        "strategy": {
            "experiment": {
                "duration": "10m",
                "variants": variants,
                "decision": {"metric": "thumbs_up_rate"},
            }
        },
    }
    experiment = parse_rollout(data).strategy.experiment
    assert experiment is not None
    assert (experiment.stable_variant.name, experiment.candidate_variant.name) == (
        stable,
        candidate,
    )
    assert experiment.decision.effective_higher_is_better is True


# -- errors name the field and say what is allowed ------------------------------------

CANARY = yaml.safe_load(CHAT_CANARY)
EXPERIMENT = {
    "name": "ab",
    "strategy": {
        "experiment": {
            "duration": "10m",
            "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
            "decision": {"metric": "feedback_mean"},
        }
    },
}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (with_("name", "Bad Name!"), "name: must be 1-63 letters"),
        ({"strategy": MINIMAL["strategy"]}, "name: required"),
        ({"name": "r"}, "strategy: required"),
        (with_("progressDeadline", "soon"), "progressDeadline: must be a duration such as"),
        (with_("progressDeadline", 0), "progressDeadline: must be longer than 0s"),
        (with_("replicas", 3), "replicas: unknown field; allowed here: name, description"),
        ({"name": "r", "strategy": {}}, "strategy: give exactly one strategy"),
        (
            with_("strategy.blueGreen", {}),
            "strategy: give exactly one strategy: canary, blueGreen, experiment or shadow "
            "(got canary, blueGreen)",
        ),
        (with_("strategy.rolling", {}), "strategy.rolling: unknown field; allowed here: canary"),
        (with_("strategy.canary.steps", []), "strategy.canary.steps: List should have at least 1"),
        (
            with_("strategy.canary.steps.0", {"setWeight": 120}),
            "steps[0].setWeight: Input should be",
        ),
        (
            with_("strategy.canary.steps.0", {"setWeight": -1}),
            "steps[0].setWeight: Input should be",
        ),
        (with_("strategy.canary.steps.0", {}), "steps[0]: a step is exactly one of setWeight"),
        (
            with_("strategy.canary.steps.0", {"setWeight": 5, "pause": {}}),
            "steps[0]: a step is exactly one of setWeight, pause or analysis "
            "(got setWeight, pause)",
        ),
        (
            with_("strategy.canary.steps.0", {"setCanaryScale": 1}),
            "steps[0].setCanaryScale: unknown field; allowed here: setWeight, pause, analysis",
        ),
        (with_("strategy.canary.steps.0", {"pause": "30s"}), "steps[0].pause: must be a mapping"),
        (
            with_("strategy.canary.steps.0", {"pause": {"duration": "30 s"}}),
            "steps[0].pause.duration: must be a duration",
        ),
        (
            with_("strategy.canary.steps.0", {"pause": {"seconds": 30}}),
            "steps[0].pause.seconds: unknown field; allowed here: duration",
        ),
        (
            with_(
                "strategy.canary.steps.2",
                {"analysis": {"templates": [{"templateName": "nope"}]}},
                CANARY,
            ),
            "strategy.canary.steps[2].analysis.templates[0].templateName: no analysis template "
            "named 'nope' (defined: errors)",
        ),
        (
            with_("strategy.canary.analysis.templates", [], CANARY),
            "strategy.canary.analysis.templates: List should have at least 1",
        ),
        (
            with_("strategy.canary.analysis.startingStep", 6, CANARY),
            "analysis.startingStep (6) must index a step: 0 to 5",
        ),
        (
            with_("strategy.canary.analysis.templates.0.name", "errors", CANARY),
            "analysis.templates[0].name: unknown field; allowed here: templateName",
        ),
        (
            with_("analysisTemplates.0.metrics.0.successCondition", "result <=", CANARY),
            "analysisTemplates[0].metrics[0].successCondition: not a valid expression",
        ),
        (
            with_("analysisTemplates.0.metrics.0.count", 0, CANARY),
            None,  # count 0 with an interval: unbounded, allowed
        ),
        (
            with_("analysisTemplates.0.metrics.0.failureLimit", 5, CANARY),
            "analysisTemplates[0].metrics[0]: count (3) must be >= failureLimit (5)",
        ),
        (
            with_(
                "analysisTemplates.0.metrics.0.provider", {"builtin": {"metric": "errors"}}, CANARY
            ),
            "metrics[0].provider.builtin.metric: must be one of error_rate, latency_p50",
        ),
        (
            with_("analysisTemplates.0.metrics.0.provider", {"graphite": {}}, CANARY),
            "metrics[0].provider.graphite: unknown field; allowed here: builtin, prometheus, web",
        ),
        (
            with_("analysisTemplates.0.metrics.0.failure_limit", 1, CANARY),
            "metrics[0].failure_limit: unknown field; allowed here: name, interval, initialDelay",
        ),
        (
            {**CANARY, "analysisTemplates": CANARY["analysisTemplates"] * 2},
            "analysisTemplates[1].name: two templates are named 'errors'",
        ),
        (
            with_(
                "strategy",
                {"blueGreen": {"autoPromotionEnabled": False, "autoPromotionSeconds": 5}},
            ),
            "strategy.blueGreen: autoPromotionSeconds needs autoPromotionEnabled: true",
        ),
        (
            with_("strategy", {"blueGreen": {"scaleDownDelaySeconds": -1}}),
            "strategy.blueGreen.scaleDownDelaySeconds: Input should be greater than or equal to 0",
        ),
        (
            with_(
                "strategy",
                {"blueGreen": {"prePromotionAnalysis": {"templates": [{"templateName": "x"}]}}},
            ),
            "strategy.blueGreen.prePromotionAnalysis.templates[0].templateName: no analysis "
            "template named 'x' (defined: none)",
        ),
        (
            with_("strategy.experiment.variants", [{"name": "A", "weight": 100}], EXPERIMENT),
            "strategy.experiment: variants: give exactly two",
        ),
        (
            with_(
                "strategy.experiment.variants",
                [{"name": "A", "weight": 60}, {"name": "B", "weight": 50}],
                EXPERIMENT,
            ),
            "variants: weights add up to 110, not 100",
        ),
        (
            with_(
                "strategy.experiment.variants",
                [{"name": "A", "weight": 50}, {"name": "A", "weight": 50}],
                EXPERIMENT,
            ),
            "variants: the two names must differ",
        ),
        (
            with_(
                "strategy.experiment.variants",
                [
                    {"name": "A", "weight": 50, "release": "stable"},
                    {"name": "B", "weight": 50, "release": "stable"},
                ],
                EXPERIMENT,
            ),
            "one variant serves stable and the other candidate",
        ),
        (
            with_("strategy.experiment.variants.0.name", "canary", EXPERIMENT),
            "variants[0].name: must be 1-32 letters",
        ),
        (
            with_("strategy.experiment.decision.metric", "request_count", EXPERIMENT),
            "decision.metric: must be one of error_rate, latency_p50",
        ),
        (
            with_("strategy.experiment.decision.alpha", 0, EXPERIMENT),
            "decision.alpha: Input should be greater than 0",
        ),
        (
            with_("strategy.experiment.duration", "0s", EXPERIMENT),
            "duration: must be longer than 0s",
        ),
        (
            {"name": "s", "strategy": {"shadow": {"percent": 10, "duration": "5m"}}},
            "strategy.shadow.analysis: required",
        ),
        (
            {
                "name": "s",
                "strategy": {
                    "shadow": {
                        "percent": 0,
                        "duration": "5m",
                        "analysis": {"templates": [{"templateName": "x"}]},
                    }
                },
            },
            "strategy.shadow.percent: Input should be greater than 0",
        ),
    ],
)
def test_invalid_specs_name_the_field(data: dict[str, Any], message: str | None) -> None:
    if message is None:
        parse_rollout(data)
        return
    with pytest.raises(SpecError) as info:
        parse_rollout(data, source="rollouts/x.yaml")
    assert str(info.value).startswith("rollouts/x.yaml: ")
    assert message in str(info.value)
    assert info.value.status_code == 400


@pytest.mark.parametrize("data", [None, [], "canary", 3])
def test_a_spec_must_be_a_mapping(data: Any) -> None:
    with pytest.raises(SpecError, match=r"x\.yaml: a rollout spec must be a mapping"):
        parse_rollout(data, source="x.yaml")


def test_load_rollout_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the file"):
        load_rollout(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: not valid YAML"):
        load_rollout(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("name: r\nstrategy: {canary: {steps: [{setWeight: 101}]}}\n")
    with pytest.raises(SpecError, match=r"wrong.yaml: strategy.canary.steps\[0\].setWeight"):
        load_rollout(wrong)


def test_digest_changes_with_content() -> None:
    a = parse_rollout(MINIMAL)
    b = parse_rollout(with_("strategy.canary.steps.0.setWeight", 50))
    assert a.digest() == parse_rollout(a.to_dict()).digest()
    assert a.digest() != b.digest()


def test_template_lookup() -> None:
    spec: RolloutSpec = parse_rollout(CANARY)
    assert spec.template("errors").name == "errors"
    with pytest.raises(KeyError):
        spec.template("nope")


# -- the documentation is checked against the models ----------------------------------

DOCS = ROOT / "docs" / "rollouts.md"


def _aliases(model: type[BaseModel], seen: set[type[BaseModel]]) -> Iterator[str]:
    """Every YAML field name of ``model`` and the models inside it."""
    if model in seen:
        return
    seen.add(model)
    for name, field in model.model_fields.items():
        yield field.alias or name
        for inner in _models_in(field.annotation):
            yield from _aliases(inner, seen)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models_in(arg)


ROLLOUT_FIELDS = sorted(
    set(_aliases(RolloutSpec, {AnalysisTemplate}))  # templates: docs/analysis.md
)


@pytest.mark.parametrize("field", ROLLOUT_FIELDS)
def test_every_rollout_field_is_documented(field: str) -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert re.search(rf"`[^`\n]*\b{re.escape(field)}\b[^`\n]*`", text), (
        f"docs/rollouts.md does not mention the field `{field}`"
    )


def test_rollout_doc_examples_are_valid() -> None:
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"^```yaml\n(.*?)^```", text, flags=re.M | re.S)
    specs = [data for data in map(yaml.safe_load, blocks) if "strategy" in data]
    assert len(specs) >= 5
    for data in specs:
        parse_rollout(data, source="docs/rollouts.md")
