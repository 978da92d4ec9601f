"""``llmship init``: the files that run a project's change flow outside a laptop.

``.github/workflows/llmship.yml`` (GitHub Actions: the gates on a pull request; on
main the release, the project's image, staging, then prod behind a GitHub
environment with required reviewers), the project's ``Dockerfile`` (llmship's
image plus the project's files) and a ``locustfile.py`` (plain Locust against an
environment's gateway). :mod:`llmship.scaffold` writes them with the rest; the
texts name the release spec and the llmship version they were written for.
"""

from __future__ import annotations

__all__ = ["ci_files"]

WORKFLOW = """\
# llmship's change flow on GitHub Actions, written by `llmship init` (docs/init.md).
#
# Pull request (job `gates`): the project's tests on the candidate spec, then the
# candidate registered as its next version and judged against prod's production
# release by `llmship eval` and `llmship loadtest` (the gates llmship.yaml's prod
# requires); the reports are uploaded as the artifact `llmship-reports` and the
# eval and load-test summaries are shown on the run's page.
#
# Push to main (job `release`): `llmship release` (the next version of the spec;
# unchanged when the pull request registered it already), the gates again on that
# exact version (recorded in the registry, which `llmship promote` checks; the eval
# reuses its cached answers), the git tag NAME-vVERSION, the project's image
# (`docker build` of ./Dockerfile, pushed when IMAGE_REPOSITORY is set), then the
# release becomes production in dev (`llmship alias set`, dev being the first
# environment) and is promoted into staging (`llmship promote`).
#
# Then job `prod` waits for the GitHub environment `prod` (Settings > Environments
# > prod > Required reviewers: the people who approve a production release) and
# runs `llmship promote --to prod --yes`: the reviewer's approval is the approval
# llmship.yaml's prod asks for (`allow_yes: true` there), and the promotion starts
# prod's rollout (rollouts/canary.yaml), which prod's controller runs; its pause
# waits for `llmship rollout promote --env prod`.
#
# Settings > Secrets and variables > Actions > Secrets:
#   LLMSHIP_DATABASE_URL  the registry the environments share, e.g.
#                         postgresql+psycopg://USER:PASSWORD@HOST:5432/llmship
#                         (docs/scaling.md). Required: without it each job has an
#                         empty SQLite registry of its own, with no production.
# The commands need no LLMSHIP_ADMIN_TOKEN: they use the registry directly (the
# token is for each environment's gateways and controllers). The other settings
# are the `env:` below: edit them here.
name: llmship

on:
  pull_request:
  push:
    branches: [main]

permissions:
  contents: read

env:
  # The release spec as it should be now: a pull request edits it (prompt,
  # parameters, weights); `llmship release` registers it as the next version.
  RELEASE_SPEC: {spec}
  LLMSHIP_DATABASE_URL: ${{ secrets.LLMSHIP_DATABASE_URL }}
  # Who the registry records as having released, promoted and approved.
  LLMSHIP_ACTOR: ${{ github.actor }}
  # What pip installs: a version, a wheel's URL or git+https://... of llmship.
  LLMSHIP_PACKAGE: llmship=={llmship_version}
  # llmship's image that ./Dockerfile builds on: build it with `make image` in
  # llmship's repository and push it where this workflow can pull it.
  LLMSHIP_IMAGE: llmship:{llmship_version}
  # Where the project's image goes, e.g. ghcr.io/OWNER/NAME (pushed with the
  # workflow's GITHUB_TOKEN); empty: the image is built, not pushed.
  IMAGE_REPOSITORY: ""
  # Gate options shared by both jobs (the SLOs and the metrics are in llmship.yaml).
  EVAL_DATASET: evals/golden.jsonl
  LOADTEST_DURATION: 1m
  # Reads `llmship release --format json` into a step's outputs ref, version and tag:
  # the version released, or the newest registered one when nothing changed.
  READ_RELEASE: >-
    import json, sys;
    r = json.load(open(sys.argv[1])); v = r["version"] or r["previous"];
    print(f"ref={r['name']}@{v}"); print(f"version={v}"); print(f"tag={r['name']}-v{v}")

jobs:
  gates:
    name: tests and gates
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    timeout-minutes: 60
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install llmship
        run: pip install "$LLMSHIP_PACKAGE" pytest
      - name: Regression tests (pytest with llmship's plugin) on the candidate spec
        run: |
          mkdir -p reports
          pytest tests/ -v --llmship-release "$RELEASE_SPEC" --junitxml reports/pytest.xml
      - name: Register the candidate as its next version
        id: candidate
        env:
          PR_NUMBER: ${{ github.event.number }}
        run: |
          llmship release "$RELEASE_SPEC" --no-changelog --format json \\
            --reason "pull request #$PR_NUMBER" > reports/release.json
          python -c "$READ_RELEASE" reports/release.json >> "$GITHUB_OUTPUT"
      - name: Eval gate against prod's production release
        env:
          CANDIDATE: ${{ steps.candidate.outputs.ref }}
        run: |
          llmship eval --dataset "$EVAL_DATASET" --candidate "$CANDIDATE" --env prod \\
            --markdown reports/eval.md --html reports/eval.html --json reports/eval.json \\
            --junit reports/eval.xml
      - name: Load-test gate
        if: ${{ !cancelled() && steps.candidate.outcome == 'success' }}
        env:
          CANDIDATE: ${{ steps.candidate.outputs.ref }}
        run: |
          llmship loadtest --release "$CANDIDATE" --env prod --prompts "$EVAL_DATASET" \\
            --duration "$LOADTEST_DURATION" --markdown reports/loadtest.md \\
            --html reports/loadtest.html --json reports/loadtest.json --junit reports/loadtest.xml
      - name: Job summary
        if: ${{ !cancelled() }}
        run: |
          for report in reports/eval.md reports/loadtest.md; do
            if [ -f "$report" ]; then cat "$report" >> "$GITHUB_STEP_SUMMARY"; fi
          done
      - name: Upload the reports
        if: ${{ !cancelled() }}
        uses: actions/upload-artifact@v4
        with:
          name: llmship-reports
          path: reports/
          if-no-files-found: ignore

  release:
    name: release, image, staging
    if: github.event_name == 'push' && github.ref == 'refs/heads/main'
    runs-on: ubuntu-latest
    timeout-minutes: 60
    concurrency:
      group: llmship-release
      cancel-in-progress: false
    permissions:
      contents: write
      packages: write
    outputs:
      ref: ${{ steps.release.outputs.ref }}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install llmship
        run: pip install "$LLMSHIP_PACKAGE"
      - name: llmship release
        id: release
        env:
          COMMIT_SHA: ${{ github.sha }}
        run: |
          mkdir -p reports
          llmship release "$RELEASE_SPEC" --format json --reason "main at $COMMIT_SHA" \\
            > reports/release.json
          cat reports/release.json
          python -c "$READ_RELEASE" reports/release.json >> "$GITHUB_OUTPUT"
      - name: Eval gate
        env:
          REF: ${{ steps.release.outputs.ref }}
        run: |
          llmship eval --dataset "$EVAL_DATASET" --candidate "$REF" --env prod \\
            --markdown reports/eval.md --html reports/eval.html --json reports/eval.json
          cat reports/eval.md >> "$GITHUB_STEP_SUMMARY"
      - name: Load-test gate
        env:
          REF: ${{ steps.release.outputs.ref }}
        run: |
          llmship loadtest --release "$REF" --env prod --prompts "$EVAL_DATASET" \\
            --duration "$LOADTEST_DURATION" --markdown reports/loadtest.md \\
            --html reports/loadtest.html --json reports/loadtest.json
          cat reports/loadtest.md >> "$GITHUB_STEP_SUMMARY"
      - name: Tag the release
        env:
          REF: ${{ steps.release.outputs.ref }}
          TAG: ${{ steps.release.outputs.tag }}
        run: |
          git config user.name "github-actions[bot]"
          git config user.email "41898282+github-actions[bot]@users.noreply.github.com"
          git fetch --tags --quiet
          if ! git rev-parse -q --verify "refs/tags/$TAG" > /dev/null; then
            git tag -a "$TAG" -m "$REF, released by llmship release"
            git push origin "refs/tags/$TAG"
          fi
      - name: Build the image
        env:
          IMAGE: ${{ env.IMAGE_REPOSITORY || '{name}' }}:${{ steps.release.outputs.version }}
        run: docker build --build-arg LLMSHIP_IMAGE="$LLMSHIP_IMAGE" -t "$IMAGE" .
      - name: Log in to the image registry
        if: ${{ env.IMAGE_REPOSITORY != '' }}
        env:
          REGISTRY_HOST: ${{ env.IMAGE_REPOSITORY }}
          TOKEN: ${{ secrets.GITHUB_TOKEN }}
          ACTOR: ${{ github.actor }}
        run: |
          echo "$TOKEN" | docker login "${REGISTRY_HOST%%/*}" --username "$ACTOR" \\
            --password-stdin
      - name: Push the image
        if: ${{ env.IMAGE_REPOSITORY != '' }}
        env:
          IMAGE: ${{ env.IMAGE_REPOSITORY }}:${{ steps.release.outputs.version }}
        run: docker push "$IMAGE"
      - name: Production in dev, then promoted to staging
        env:
          REF: ${{ steps.release.outputs.ref }}
        run: |
          # dev is the first environment: a release from main becomes its production
          llmship alias set production "$REF" --env dev --reason "released from main"
          llmship promote "$REF" --to staging --reason "released from main"
      - name: Upload the reports
        if: ${{ !cancelled() }}
        uses: actions/upload-artifact@v4
        with:
          name: llmship-release-reports
          path: reports/
          if-no-files-found: ignore

  prod:
    name: promote to prod
    needs: release
    runs-on: ubuntu-latest
    timeout-minutes: 30
    # Waits for a required reviewer of the GitHub environment `prod`.
    environment: prod
    concurrency:
      group: llmship-prod
      cancel-in-progress: false
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install llmship
        run: pip install "$LLMSHIP_PACKAGE"
      - name: llmship promote --to prod
        env:
          REF: ${{ needs.release.outputs.ref }}
          RUN: ${{ github.server_url }}/${{ github.repository }}/actions/runs/${{ github.run_id }}
        run: |
          llmship promote "$REF" --to prod --yes \\
            --reason "approved in the GitHub environment prod: $RUN"
          llmship rollout status --env prod > rollout.txt
          cat rollout.txt
          { echo '```text'; cat rollout.txt; echo '```'; } >> "$GITHUB_STEP_SUMMARY"
"""
"""``.github/workflows/llmship.yml``; ``{spec}``, ``{name}`` and ``{llmship_version}``
are filled in by :func:`ci_files`."""

DOCKERFILE = """\
# The project's image: llmship's image (`llmship serve`, `gateway`, `controller`; its
# docs/image.md) plus this project's settings, release specs, rollouts and golden
# dataset in /data, the image's working directory, so every command in it uses them.
#
#   docker build --build-arg LLMSHIP_IMAGE=registry.example.com/llmship:{llmship_version} \\
#       -t {name} .
#   docker run -p 8000:8000 -e LLMSHIP_DATABASE_URL -e LLMSHIP_ENV=prod {name} serve
#   docker run -p 8080:8080 -e LLMSHIP_HEALTH_PORT=8080 -e LLMSHIP_DATABASE_URL \\
#       -e LLMSHIP_ADMIN_TOKEN -e LLMSHIP_ENV=prod {name} gateway
#
# LLMSHIP_IMAGE: llmship's image, built by `make image` in llmship's repository and
# pushed where your builds can pull it (the workflow passes its LLMSHIP_IMAGE).
ARG LLMSHIP_IMAGE=llmship:{llmship_version}
FROM ${LLMSHIP_IMAGE}

LABEL org.opencontainers.image.title="{name}" \\
      org.opencontainers.image.description="An llmship project: its releases, gates and rollouts."

# Read-only to the servers (owned by root); /data itself stays theirs to write.
COPY llmship.yaml /data/
COPY models/ /data/models/
COPY rollouts/ /data/rollouts/
COPY evals/ /data/evals/

ENV LLMSHIP_CONFIG=/data/llmship.yaml
"""
"""The project's ``Dockerfile``; ``{name}`` and ``{llmship_version}`` are filled in."""

LOCUSTFILE = '''\
"""Load on an environment's gateway with plain Locust (its web UI, headless runs,
distributed workers), with the golden dataset's prompts::

    locust -f locustfile.py                                   # dev's gateway, web UI at :8089
    locust -f locustfile.py --host http://127.0.0.1:8081 --headless -u 4 -r 2 -t 1m
    locust -f locustfile.py --prompts my-prompts.jsonl --max-tokens 64

Each user streams chat completions from the gateway's OpenAI-compatible endpoint
(``/v1/chat/completions``) with llmship's Locust user, which measures every answer:
Locust's table shows ``POST`` (end-to-end latency, failures) and ``TTFT`` rows.
The gate is ``llmship loadtest`` (SLOs from llmship.yaml, reports, the run recorded
in the registry); this file is for watching a live environment by hand.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from locust import between, events

from llmship.loadtest.plan import Prompt, load_prompts
from llmship.loadtest.user import LLMUser

HERE = Path(__file__).resolve().parent


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--max-tokens", type=int, default=100, help="most tokens per answer")
    parser.add_argument("--model", default="", help="`model` of requests (default: /v1/models)")
    parser.add_argument(
        "--prompts",
        default=str(HERE / "evals" / "golden.jsonl"),
        help="JSONL (prompt/input/messages) or text file of prompts",
    )


@cache
def _prompts(path: str) -> tuple[Prompt, ...]:
    return tuple(load_prompts(Path(path)))


class GatewayUser(LLMUser):
    """One person chatting through the gateway, a few seconds between questions."""

    host = "http://127.0.0.1:8080"  # dev's gateway (llmship.yaml); --host for another
    endpoint = "chat"
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        # read here, not at import: in distributed mode the master sends its options
        options = self.environment.parsed_options
        if options is None:
            return
        cls = type(self)
        cls.max_tokens = options.max_tokens
        cls.model = options.model or cls.model
        cls.prompts = _prompts(options.prompts)
'''
"""The project's ``locustfile.py``."""


def ci_files(*, spec: str, name: str, llmship_version: str) -> list[tuple[str, str]]:
    """``(path, text)`` of the workflow, the Dockerfile and the locustfile of a project
    whose release spec is the file ``spec`` of the release ``name``."""
    values = {"{spec}": spec, "{name}": name, "{llmship_version}": llmship_version}

    def fill(text: str) -> str:
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    return [
        (".github/workflows/llmship.yml", fill(WORKFLOW)),
        ("Dockerfile", fill(DOCKERFILE)),
        ("locustfile.py", LOCUSTFILE),
    ]
