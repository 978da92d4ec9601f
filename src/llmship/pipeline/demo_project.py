"""The project ``llmship demo`` writes: ``llmship init``'s project, made to show the change
flow in a few minutes.

It is :func:`llmship.scaffold.project_files` (the bundled SmolLM2 as ``1.0.0`` in
``models/``, the regression tests, the CI files) with four things of its own:

- ``llmship.yaml``: two environments, ``staging`` and ``prod``, each on its own
  gateway port; ``prod`` needs both gates, an approval (``allow_yes`` so the demo
  approves with ``--yes``) and runs the short canary with analysis; a load-test gate
  sized for a laptop running two stacks.
- ``evals/golden.jsonl``: three cases whose assertions the bundled model passes at
  temperature 0 (a greeting, a capital, a colour).
- ``rollouts/canary.yaml`` (instead of init's): half the traffic for 20 seconds under an error-rate
  analysis, then all of it.
- ``candidates/good.yaml`` (another system prompt, which passes every gate) and
  ``candidates/bad.yaml`` (a system prompt telling the model to answer "no" to
  everything: it no longer says hello nor names the sky's colour, so the eval gate
  rejects it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from llmship.release.bundled import bundled_spec
from llmship.release.spec import parse_spec
from llmship.scaffold import GOLDEN_CASES as INIT_CASES
from llmship.scaffold import ProjectFile, project_files

__all__ = [
    "BAD_CANDIDATE",
    "BAD_PROMPT",
    "GOLDEN_CASES",
    "GOOD_CANDIDATE",
    "GOOD_PROMPT",
    "PROD",
    "ROLLOUT",
    "STAGING",
    "demo_files",
]

STAGING, PROD = "staging", "prod"
GOOD_CANDIDATE, BAD_CANDIDATE = "candidates/good.yaml", "candidates/bad.yaml"
ROLLOUT = "rollouts/canary.yaml"

GOOD_PROMPT = "You are a helpful assistant. Keep your answers short."
BAD_PROMPT = "Always answer with the single word 'no', whatever you are asked."

CONFIG = """\
# The llmship demo project (written by `llmship demo`; docs/demo.md). Every setting
# can also come from an LLMSHIP_* environment variable, which wins over this file.
gates:
  # The eval gate: the candidate against the production release, on the golden set.
  # One case that passes in production and fails for the candidate fails it.
  eval:
    alpha: 0.05
    metrics:
      pass_rate: {{max_regression: 0.1}}
  # The load-test gate: generous limits, the demo shares the machine with two stacks.
  loadtest:
    slo:
      ttft_p95: 10s
      error_rate: 1%

# Two environments, in promotion order (docs/environments.md), each served by its own
# `llmship up --env NAME` on its gateway port.
environments:
  {staging}:
    gateway_port: {staging_port}
    require: [eval]
  {prod}:
    gateway_port: {prod_port}
    require: [eval, loadtest]
    approval: true                       # waits for `llmship approve ID` ...
    allow_yes: true                      # ... or `--yes`, as the demo does
    reason: required
    rollout: {rollout}
"""

ROLLOUT_SPEC = """\
# The demo's canary into prod: half the traffic for 20 seconds, then all of it, with
# the error rate watched from the first step (docs/rollouts.md, docs/analysis.md).
# `llmship pipeline run --traffic` sends live requests through prod's gateway meanwhile.
name: canary
progressDeadline: 3m
strategy:
  canary:
    steps:
      - setWeight: 50
      - pause: {duration: 20s}
      - setWeight: 100
    analysis:
      templates: [{templateName: errors}]
analysisTemplates:
  - name: errors
    metrics:
      - name: error-rate
        interval: 5s
        failureLimit: 1
        inconclusiveLimit: 20           # the first seconds may have no request yet
        successCondition: result <= 0.05
        provider:
          builtin: {metric: error_rate, window: 30s}
"""

GOLDEN_CASES = (
    *(case for case in INIT_CASES if case["id"] in ("greeting", "capital")),
    {
        "id": "sky",
        "input": "What color is the sky on a clear day?",
        "reference": "The sky is blue on a clear day.",
        "assert": [{"type": "icontains", "value": "blue"}],
    },
)
"""The demo's golden set: init's greeting and capital, and a colour instead of its
latency-only case; each assertion holds for the bundled release at temperature 0."""


def _candidate(path: str, prompt: str, why: str) -> str:
    """A candidate: the bundled release's spec with another system prompt. Its
    version is the pipeline's to choose (the next one), so it stays 1.0.0 here."""
    data = bundled_spec().to_dict()
    data["prompt"] = {"system": prompt}
    header = (
        f"# {why}\n"
        f"#   llmship pipeline run --candidate {path} --traffic --yes\n"
        "# The pipeline releases it as the next version (a new system prompt: a minor bump).\n"
    )
    return header + parse_spec(data, source=path).to_yaml()


def demo_files(ports: Mapping[str, int]) -> list[ProjectFile]:
    """The demo project's files; ``ports`` gives each environment's gateway port."""
    replaced = {
        "llmship.yaml": CONFIG.format(
            staging=STAGING,
            prod=PROD,
            staging_port=ports[STAGING],
            prod_port=ports[PROD],
            rollout=ROLLOUT,
        ),
        "evals/golden.jsonl": "".join(
            json.dumps(case, ensure_ascii=False) + "\n" for case in GOLDEN_CASES
        ),
        ROLLOUT: ROLLOUT_SPEC,
    }
    files = [ProjectFile(f.path, replaced.get(f.path, f.text)) for f in project_files()]
    good = "A good candidate: another system prompt, which passes every gate."
    bad = "A bad candidate: a system prompt that breaks the golden set's assertions."
    return [
        *files,
        ProjectFile(GOOD_CANDIDATE, _candidate(GOOD_CANDIDATE, GOOD_PROMPT, good)),
        ProjectFile(BAD_CANDIDATE, _candidate(BAD_CANDIDATE, BAD_PROMPT, bad)),
    ]
