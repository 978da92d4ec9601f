"""``llmship init``: the files of a new llmship project.

A project is a directory with ``llmship.yaml`` (settings, gates and environments), a
release spec in ``models/``, a rollout strategy in ``rollouts/``, a golden dataset in
``evals/`` and a regression test in ``tests/``, plus what runs its change flow in CI
(:mod:`llmship.scaffold_ci`: a GitHub workflow, a ``Dockerfile``, a
``locustfile.py``); state goes to ``.llmship/`` (ignored by git). The release is the
bundled SmolLM2, so the project runs as soon as it is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llmship import __version__
from llmship.errors import ConflictError, InvalidRequestError
from llmship.release.bundled import bundled_spec
from llmship.scaffold_ci import ci_files

__all__ = ["ProjectFile", "project_files", "write_project"]

GITIGNORE_LINE = ".llmship/"

CONFIG = """\
# llmship project configuration (docs/configuration.md). Every setting can also
# come from an LLMSHIP_* environment variable, which wins over this file.
env: dev

gates:
  # `llmship eval`: the candidate against the production release, on evals/:
  #   llmship eval --dataset evals/golden.jsonl --candidate {candidate}
  eval:
    alpha: 0.05
    metrics:
      pass_rate: {max_regression: 0.1}
  # `llmship loadtest`: service-level objectives of a load test of the candidate,
  # with the golden dataset's prompts for a minute (enough answers for a p95):
  #   llmship loadtest --release {candidate} --prompts evals/golden.jsonl --duration 1m
  loadtest:
    slo:
      ttft_p95: 2s
      error_rate: 1%

# The environments, in promotion order (docs/environments.md): `llmship up --env NAME`
# serves one on its gateway port; `llmship promote NAME@VERSION --to ENV` moves a
# release that is production in the environment before ENV into ENV, once it has
# passed ENV's required gates. The CI workflow (.github/workflows/llmship.yml)
# promotes every release from main into dev and staging, then into prod.
environments:
  dev:
    gateway_port: 8080
  staging:
    gateway_port: 8081
    require: [eval]
  prod:
    gateway_port: 8082
    require: [eval, loadtest]
    approval: true                 # waits for `llmship approve ID` by another person
    allow_yes: true                # or --yes: CI's prod job, behind GitHub's required reviewers
    reason: required               # traffic and alias changes must say why
    rollout: rollouts/canary.yaml  # a promotion starts this canary
"""

ROLLOUT = """\
# A canary: 20% of the traffic, a pause for a person, 50% for a minute, then all,
# with the error rate and latency watched the whole time (docs/rollouts.md). The
# latency is judged against stable's over the same minute (docs/analysis.md,
# comparison mode): a busy machine slows both, and does not fail the candidate.
#
#   llmship rollout start rollouts/canary.yaml --candidate {name}@1.1.0
name: canary
progressDeadline: 10m
strategy:
  canary:
    steps:
      - setWeight: 20
      - pause: {{}}                 # until `llmship rollout promote`
      - setWeight: 50
      - pause: {{duration: 60s}}
      - setWeight: 100
    analysis:
      templates: [{{templateName: health}}]
analysisTemplates:
  - name: health
    metrics:
      - name: error-rate
        interval: 15s
        failureLimit: 1
        successCondition: result <= 0.05
        provider:
          builtin: {{metric: error_rate, window: 1m}}
      - name: latency                 # not significantly slower than stable
        interval: 15s
        failureLimit: 2
        inconclusiveLimit: 4          # the first minute may have too few requests
        provider:                     # alpha 0.01: it is tested every 15 s, so a fair
                                      # candidate must not fail by chance
          builtin: {{metric: latency_p95, window: 1m, compare: stable, minSamples: 10, alpha: 0.01}}
"""

GOLDEN_CASES = (
    {
        "id": "greeting",
        "input": "Say hello.",
        "reference": "Hello! How can I help you today?",
        "assert": [{"type": "icontains", "value": "hello"}],
    },
    {
        "id": "capital",
        "input": "What is the capital of France?",
        "reference": "The capital of France is Paris.",
        "assert": [{"type": "icontains", "value": "Paris"}],
    },
    {
        "id": "hello-zh",
        "input": "你好",
        "reference": "你好！有什么可以帮你的吗？",
        "assert": [{"type": "latency", "threshold": 30}],
    },
)
"""The golden dataset's cases (``evals/golden.jsonl``, one JSON object a line)."""


REGRESSION_TEST = """\
\"\"\"Regression tests of the release, with llmship's pytest plugin (docs/regression-tests.md).

    pytest tests/ -v                                  # the production release
    pytest tests/ -v --llmship-release NAME@VERSION   # a candidate

`generate` serves the release in-process at temperature 0.
\"\"\"

from collections.abc import Callable


def test_it_answers(generate: Callable[..., str]) -> None:
    assert generate("你好", max_new_tokens=16).strip()


def test_it_knows_the_capital_of_france(generate: Callable[..., str]) -> None:
    assert "Paris" in generate("What is the capital of France?", max_new_tokens=20)
"""


@dataclass(frozen=True)
class ProjectFile:
    """One file of the project: its path under the project directory and its text."""

    path: str
    text: str


def _release_spec() -> tuple[str, str]:
    spec = bundled_spec()
    header = (
        "# The release: SmolLM2-135M-Instruct bundled with llmship (docs/release-specs.md).\n"
        "# Register it, then point production at it:\n"
        f"#   llmship models register models/{spec.name}-{spec.version}.yaml\n"
        f"#   llmship alias set production {spec.ref} --reason 'first release'\n"
        "# A change (weights, prompt, parameters) is a new file with a new version.\n"
    )
    return f"models/{spec.name}-{spec.version}.yaml", header + spec.to_yaml()


def project_files() -> list[ProjectFile]:
    """The files ``llmship init`` writes, in order."""
    spec_path, spec_text = _release_spec()
    name = bundled_spec().name
    return [
        ProjectFile("llmship.yaml", CONFIG.replace("{candidate}", f"{name}@1.1.0")),
        ProjectFile(spec_path, spec_text),
        ProjectFile("rollouts/canary.yaml", ROLLOUT.format(name=name)),
        ProjectFile(
            "evals/golden.jsonl",
            "".join(json.dumps(case, ensure_ascii=False) + "\n" for case in GOLDEN_CASES),
        ),
        ProjectFile("tests/test_regression.py", REGRESSION_TEST),
        *(
            ProjectFile(path, text)
            for path, text in ci_files(spec=spec_path, name=name, llmship_version=__version__)
        ),
    ]


def write_project(directory: Path, *, force: bool = False) -> list[Path]:
    """Write the project into ``directory`` (created if missing); the paths written.

    Refuses, writing nothing, when a file exists and ``force`` is false; adds
    ``.llmship/`` to ``.gitignore`` unless it is there already.
    """
    if directory.exists() and not directory.is_dir():
        raise InvalidRequestError(f"{directory} is a file; give a directory to write into")
    files = project_files()
    existing = [f.path for f in files if (directory / f.path).exists()]
    if existing and not force:
        raise ConflictError(
            f"{directory} already has {', '.join(existing)}; "
            "use --force to overwrite them (other files are left alone)"
        )
    written: list[Path] = []
    for f in files:
        path = directory / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f.text, encoding="utf-8")
        written.append(path)
    gitignore = directory / ".gitignore"
    lines = gitignore.read_text(encoding="utf-8").splitlines() if gitignore.exists() else []
    if GITIGNORE_LINE not in lines:
        with gitignore.open("a", encoding="utf-8") as out:
            if lines and gitignore.read_text(encoding="utf-8")[-1:] != "\n":
                out.write("\n")
            out.write(GITIGNORE_LINE + "\n")
        written.append(gitignore)
    return written
