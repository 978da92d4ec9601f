"""Every rollout spec shipped in `rollouts/`, run to its documented end as a user types it:
the CLI in a fresh copy of the project, under `llmship up` (which starts every model
server itself), with the real model, while steady client traffic goes through the gateway
the whole time and never sees an error.

One test per journey: the seed's canary promoted by a person, blue-green with its preview
and automatic switch, the A/B experiment decided early on real ratings, shadow traffic to
its end, and a candidate whose answers fail, aborted by the canary's analysis.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from _journey import (
    Shell,
    Traffic,
    Up,
    free_port,
    gateway_serves,
    production,
    project,
    rollout_status,
    stack,
    wait_for,
)
from llmship.supervisor.plan import STOP_GRACE

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("journeys")]
"""The journeys run one after the other on one worker: each runs several model servers."""

STABLE = "smollm2-chat@1.0.0"
CONCISE = "s/system: You are a helpful assistant./system: You are a concise assistant./"
"""The README's edit that makes 1.1.0: another system prompt."""


def release_from_bundled(shell: Shell, version: str, *edits: str) -> str:
    """Write ``models/smollm2-chat-VERSION.yaml`` from the bundled spec with ``sed``
    (the version and ``edits``), as the README does, and register it; its ref."""
    seds = " ".join(f"-e '{e}'" for e in (f"s/^version: 1.0.0/version: {version}/", *edits))
    path = f"models/smollm2-chat-{version}.yaml"
    shell.run(f"grep -v '^#' models/smollm2-chat-1.0.0.yaml | sed {seds} > {path}")
    out = shell.run(f"llmship models register {path}").stdout
    assert f"registered smollm2-chat@{version}" in out, out
    return f"smollm2-chat@{version}"


def follow(
    shell: Shell, until: Callable[[dict[str, Any]], bool], timeout: float
) -> tuple[dict[str, Any], list[tuple[str, str, Any]]]:
    """Poll ``llmship rollout status`` until ``until(status)``: the last status, and every
    distinct (phase, step, weight) seen on the way."""
    seen: list[tuple[str, str, Any]] = []
    last: dict[str, Any] = {}

    def reached() -> bool:
        last.clear()
        last.update(rollout_status(shell))
        where = (last["phase"], last["step"], last["weight"])
        if not seen or seen[-1] != where:
            seen.append(where)
        return until(last)

    wait_for(reached, f"the rollout to get on (seen: {seen})", timeout)
    return last, seen


def inconclusive(status: dict[str, Any]) -> bool:
    """Whether the rollout waits for a person after an Inconclusive analysis."""
    return str(status["pause_reason"] or "").startswith("InconclusiveAnalysis")


def ended(status: dict[str, Any]) -> bool:
    """Whether the rollout is Healthy or Aborted, or waits after an Inconclusive analysis."""
    return status["phase"] in ("Healthy", "Aborted") or inconclusive(status)


def run_phase(status: dict[str, Any], role: str) -> str:
    """The phase of the latest analysis run for ``role`` (``prePromotion``, ``guard``,
    ``decision``, ...) in a status."""
    runs = [r for r in status["runs"] if r["role"] == role]
    assert runs, f"no {role} analysis run: {status['runs']}"
    return str(runs[-1]["phase"])


def stopped(up: Up, ref: str) -> bool:
    """Whether ``llmship up`` said it stopped the model server of ``ref``."""
    return f"stopped {ref}: nothing needs it any more" in up.output()


def upstream_failures(url: str, ref: str) -> float:
    """``llmship_upstream_failures_total`` of ``ref`` at the gateway, all reasons."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("llmship_upstream_failures_total{") and f'version="{ref}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def report(journey: str, started: float, traffic: Traffic, **marks: float) -> None:
    """Print how long the journey took, when its milestones came, and the traffic sent."""
    took = time.monotonic() - started
    parts = ", ".join(f"{k.replace('_', ' ')} {v - started:.0f}s" for k, v in marks.items())
    answers = traffic.snapshot()
    span = (answers[-1].sent - answers[0].sent) if len(answers) > 1 else 0.0
    rate = len(answers) / span if span else 0.0
    print(f"\njourney {journey}: {took:.0f}s ({parts}); {len(answers)} requests, {rate:.1f}/s")


@pytest.mark.timeout(600)
def test_seed_canary_paused_for_a_person_then_promoted(tmp_path: Path) -> None:
    started = time.monotonic()
    shell = Shell(project(tmp_path), free_port())
    with stack(shell) as up, Traffic(shell.url) as traffic:
        # Given the local stack serving 1.0.0 under steady traffic, and 1.1.0 registered
        ready = time.monotonic()
        new = release_from_bundled(shell, "1.1.0", CONCISE)

        # When the seed's canary starts with 1.1.0
        out = shell.run(f"llmship rollout start rollouts/seed-canary.yaml --candidate {new}").stdout
        assert f"canary from {STABLE}" in out, out

        # Then it waits at its `pause: {}` step with 1.1.0 at 20%, answering some clients
        status, _ = follow(shell, lambda s: s["phase"] != "Progressing", timeout=240)
        assert status["phase"] == "Paused", status
        assert status["step"] == "step 2/5: pause until promoted", status
        assert status["weight"] == 20, status
        paused = time.monotonic()
        wait_for(
            lambda: traffic.versions(since=paused) == {STABLE, new},
            "1.1.0 to answer some clients and 1.0.0 the others",
            60,
        )
        time.sleep(5)  # stays paused: only a person moves it on
        assert rollout_status(shell)["step"] == "step 2/5: pause until promoted"

        # When a person promotes it
        shell.run("llmship rollout promote")
        promoted = time.monotonic()

        # Then it goes to 40%, waits its 60 s, takes all traffic and ends Healthy
        status, seen = follow(shell, ended, timeout=300)
        healthy = time.monotonic()
        assert status["phase"] == "Healthy", (status, seen)
        assert ("Paused", "step 4/5: pause 1m", 40) in seen, seen
        assert healthy - promoted >= 60, seen
        assert all(r["phase"] != "Failed" for r in status["runs"]), status["runs"]
        assert production(shell) == new
        wait_for(gateway_serves(shell.url, new), "the gateway's /readyz to say stable is 1.1.0")
        serving_new = time.monotonic()
        wait_for(lambda: traffic.versions(since=serving_new) == {new}, "clients to get 1.1.0", 30)

        # And `llmship up` stops the old stable's model server, which nothing needs now
        wait_for(lambda: stopped(up, STABLE), "llmship up to stop 1.0.0's server", 60)
        stopped_old = time.monotonic()
        time.sleep(3)  # clients go on without a hitch after the old server is gone
        traffic.stop()
        assert traffic.versions(since=stopped_old) == {new}
    traffic.assert_no_errors()
    report(
        "seed-canary",
        started,
        traffic,
        stack_ready=ready,
        paused_at_20=paused,
        promoted=promoted,
        healthy=healthy,
        old_stable_stopped=stopped_old,
    )


@pytest.mark.timeout(600)
def test_bluegreen_previews_then_switches_by_itself(tmp_path: Path) -> None:
    started = time.monotonic()
    shell = Shell(project(tmp_path), free_port())
    # most requests ask for the preview: the smoke analysis judges them at 25 s (minSamples 5)
    with stack(shell) as up, Traffic(shell.url, preview_share=0.75) as traffic:
        # Given the stack serving 1.0.0 under steady traffic, some of it asking for the
        # preview, and 1.1.0 registered
        ready = time.monotonic()
        new = release_from_bundled(shell, "1.1.0", CONCISE)

        # When the blue-green rollout starts with 1.1.0
        started = time.monotonic()
        out = shell.run(f"llmship rollout start rollouts/bluegreen.yaml --candidate {new}").stdout
        assert f"blueGreen from {STABLE}" in out, out

        # Then 1.1.0 answers the preview requests only
        def previewing() -> bool:
            return any(a.variant == "preview" and a.version == new for a in traffic.snapshot())

        wait_for(previewing, "1.1.0 to answer a preview request", 180)
        preview_at = time.monotonic()

        # and after its 30 s and the smoke checks it switches, checks again, ends Healthy
        status, seen = follow(shell, ended, timeout=300)
        healthy = time.monotonic()
        assert status["phase"] == "Healthy", (status, seen)
        assert run_phase(status, "prePromotion") == "Successful", status["runs"]
        assert run_phase(status, "postPromotion") == "Successful", status["runs"]
        assert production(shell) == new
        wait_for(gateway_serves(shell.url, new), "the gateway's /readyz to say stable is 1.1.0")
        switched = min(
            a.sent for a in traffic.snapshot() if a.version == new and a.variant != "preview"
        )
        # autoPromotionSeconds (30) count from the preview's readiness, after the start (the
        # first preview answer seen here can come seconds after it on a loaded machine)
        assert switched - started >= 29, "switched before autoPromotionSeconds"
        assert switched > preview_at
        before = [a for a in traffic.snapshot() if a.sent < switched - 1]
        assert {a.version for a in before if a.variant != "preview"} == {STABLE}
        assert new in {a.version for a in before if a.variant == "preview"}
        serving_new = time.monotonic()
        wait_for(lambda: traffic.versions(since=serving_new) == {new}, "clients to get 1.1.0", 30)
        wait_for(lambda: stopped(up, STABLE), "llmship up to stop 1.0.0's server", 180)
        stopped_old = time.monotonic()
        traffic.stop()
    traffic.assert_no_errors()
    report(
        "bluegreen",
        started,
        traffic,
        stack_ready=ready,
        preview_answering=preview_at,
        switched=switched,
        healthy=healthy,
        old_stable_stopped=stopped_old,
    )


def rate(
    url: str, traffic: Traffic, ratings: dict[str, int], *, since: float, per_arm: int
) -> Counter[str]:
    """Rate the answers clients got since ``since`` through ``POST /feedback`` (the query
    id from ``x-request-id``), ``ratings[version]`` each, until every version has
    ``per_arm`` ratings; how many each got."""
    rated: set[str] = set()
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + 300
    with httpx.Client(timeout=30) as http:
        while min(counts[v] for v in ratings) < per_arm:
            assert time.monotonic() < deadline, f"too few answers to rate: {counts}"
            for a in traffic.snapshot():
                if a.sent < since or a.status != 200 or a.query_id in rated:
                    continue
                assert a.version in ratings, a
                r = http.post(
                    f"{url}/feedback", json={"query_id": a.query_id, "rating": ratings[a.version]}
                )
                assert r.status_code == 200, r.text
                assert r.json()["version"] == a.version, (r.json(), a)
                rated.add(a.query_id)
                counts[a.version] += 1
            time.sleep(0.5)
    return counts


@pytest.mark.timeout(600)
def test_ab_experiment_decided_early_on_the_ratings_so_far(tmp_path: Path) -> None:
    started = time.monotonic()
    shell = Shell(project(tmp_path), free_port())
    with stack(shell), Traffic(shell.url, users=500) as traffic:
        # Given the stack serving 1.0.0 to many users, and 1.1.0 registered
        ready = time.monotonic()
        new = release_from_bundled(shell, "1.1.0", CONCISE)

        # When the 30-minute A/B experiment starts with 1.1.0
        out = shell.run(f"llmship rollout start rollouts/ab-feedback.yaml --candidate {new}").stdout
        assert f"experiment from {STABLE}" in out, out
        wait_for(lambda: new in traffic.versions(), "1.1.0 to answer its users", 180)
        split = time.monotonic()
        status = rollout_status(shell)
        assert (status["phase"], status["step"]) == ("Progressing", "stage 1/2: experiment running")

        # and users rate 1.1.0's answers 5 and 1.0.0's 2, at least minSamples (30) each
        counts = rate(shell.url, traffic, {new: 5, STABLE: 2}, since=split, per_arm=40)
        rated = time.monotonic()
        by_user: dict[str, set[str]] = {}
        for a in traffic.snapshot():
            if a.sent >= split and a.status == 200:
                by_user.setdefault(a.user, set()).add(a.version)
        assert all(len(v) == 1 for v in by_user.values()), "a user saw both variants"
        # (the errors guard measures every minute: it must not abort; with fewer than its
        # minSamples it is Inconclusive and the experiment waits for a person, who promotes)
        status = rollout_status(shell)
        assert status["phase"] != "Aborted", status
        assert status["step"] == "stage 1/2: experiment running", status
        guard = run_phase(status, "guard")
        assert guard in ("Running", "Inconclusive"), status["runs"]

        # and a person promotes it long before its 30 minutes are over
        shell.run("llmship rollout promote")
        promoted = time.monotonic()

        # Then the decision on the ratings so far (Mann-Whitney) makes 1.1.0 production
        status, seen = follow(shell, ended, timeout=120)
        healthy = time.monotonic()
        assert status["phase"] == "Healthy", (status, seen)
        assert run_phase(status, "decision") == "Successful", status["runs"]
        assert all(r["phase"] not in ("Failed", "Error") for r in status["runs"]), status["runs"]
        assert production(shell) == new
        wait_for(gateway_serves(shell.url, new), "the gateway's /readyz to say stable is 1.1.0")
        serving_new = time.monotonic()
        wait_for(lambda: traffic.versions(since=serving_new) == {new}, "clients to get 1.1.0", 30)
        traffic.stop()
        summary = shell.run("llmship feedback summary").stdout
        assert new in summary, summary
    traffic.assert_no_errors()
    print(f"\nratings sent: {dict(counts)}; the guard was {guard} at the promotion")
    report(
        "ab-feedback",
        started,
        traffic,
        stack_ready=ready,
        users_split=split,
        rated=rated,
        promoted=promoted,
        healthy=healthy,
    )


@pytest.mark.timeout(900)
def test_shadow_mirrors_for_five_minutes_then_promotes(tmp_path: Path) -> None:
    started = time.monotonic()
    shell = Shell(project(tmp_path), free_port())
    with stack(shell), Traffic(shell.url) as traffic:
        # Given the stack serving 1.0.0 under steady traffic, and 1.0.1 registered: the
        # bundled release with another description, so its answers are stable's (seed 0)
        ready = time.monotonic()
        new = release_from_bundled(
            shell, "1.0.1", "s/^description: .*/description: The bundled release, described anew./"
        )

        # When the shadow rollout starts with 1.0.1
        out = shell.run(f"llmship rollout start rollouts/shadow.yaml --candidate {new}").stdout
        assert f"shadow from {STABLE}" in out, out

        # Then it mirrors for 5 minutes, clients only ever getting 1.0.0's answers
        mirroring: dict[str, float] = {}
        seen: list[tuple[str, str, Any]] = []
        last: dict[str, Any] = {}

        def done() -> bool:
            polled = time.monotonic()
            last.clear()
            last.update(rollout_status(shell))
            where = (last["phase"], last["step"], last["weight"])
            if not seen or seen[-1] != where:
                seen.append(where)
            shadow = (last.get("traffic") or {}).get("shadow")
            if last["phase"] == "Progressing" and shadow:
                mirroring.setdefault("from", polled)
                mirroring["until"] = polled  # what clients sent until now went to stable
            time.sleep(2)
            return last["phase"] in {"Healthy", "Aborted", "Paused"}

        wait_for(done, f"the shadow rollout to end (seen: {seen})", 600)
        healthy = time.monotonic()
        assert last["phase"] == "Healthy", (last, seen)
        assert run_phase(last, "shadow") == "Successful", last["runs"]
        metrics = {m["metric"]: m for r in last["runs"] for m in r["metrics"]}
        similarity = metrics["answer-similarity"]
        assert similarity["last_value"] == pytest.approx(1.0), similarity  # the same answers
        assert mirroring["until"] - mirroring["from"] >= 240, mirroring
        during = [a for a in traffic.snapshot() if a.sent <= mirroring["until"]]
        assert {a.version for a in during if a.status == 200} == {STABLE}
        assert production(shell) == new
        wait_for(gateway_serves(shell.url, new), "the gateway's /readyz to say stable is 1.0.1")
        serving_new = time.monotonic()
        wait_for(lambda: traffic.versions(since=serving_new) == {new}, "clients to get 1.0.1", 30)
        traffic.stop()
    traffic.assert_no_errors()
    print(f"\nshadow measurements: {json.dumps(metrics, default=str)}")
    report(
        "shadow",
        started,
        traffic,
        stack_ready=ready,
        mirroring=mirroring["from"],
        healthy=healthy,
    )


class _BrokenEngine(BaseHTTPRequestHandler):
    """An OpenAI-compatible inference engine that is up (it lists its model) but fails
    every generation with a 500, as a vLLM whose GPU has failed does."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "smollm2", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(500, {"error": {"message": "CUDA error: an illegal memory access"}})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def broken_engine() -> Iterator[str]:
    """A :class:`_BrokenEngine` on a free port; its base URL (with ``/v1``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


BROKEN_SPEC = """\
cat > models/smollm2-chat-1.2.0.yaml <<'EOF'
name: smollm2-chat
version: 1.2.0
backend: openai
description: SmolLM2 moved to an inference engine (which fails every generation).
model:
  base_url: {base_url}
  id: smollm2
runtime:
  timeout_s: 10
EOF"""


@pytest.mark.timeout(600)
def test_failing_candidate_is_aborted_without_a_client_noticing(tmp_path: Path) -> None:
    started = time.monotonic()
    shell = Shell(project(tmp_path), free_port())
    with broken_engine() as engine, stack(shell) as up, Traffic(shell.url) as traffic:
        # Given the stack serving 1.0.0 under steady traffic, and 1.2.0 registered: a
        # release served through an engine that is up but fails every generation
        ready = time.monotonic()
        shell.run(BROKEN_SPEC.format(base_url=engine))
        assert (
            "registered smollm2-chat@1.2.0"
            in shell.run("llmship models register models/smollm2-chat-1.2.0.yaml").stdout
        )
        bad = "smollm2-chat@1.2.0"

        # When the canary starts with it
        shell.run(f"llmship rollout start rollouts/chat-canary.yaml --candidate {bad}")

        # Then its model server becomes ready, it gets its 20%, fails them (the gateway
        # answers them from stable), and the analysis aborts it
        status, seen = follow(shell, ended, timeout=240)
        resumed = 0
        while inconclusive(status) and "no data" in json.dumps(status["runs"]):
            # light traffic sent the candidate nothing before the first measurement, 5 s
            # after it got its 20%: no data is Inconclusive, so it paused for a person, who
            # resumes it (a new background run; docs/controller.md)
            assert resumed < 3, status
            shell.run("llmship rollout resume --reason 'no data yet: measure again'")
            resumed += 1
            status, more = follow(shell, ended, timeout=120)
            seen += more
        aborted = time.monotonic()
        assert status["phase"] == "Aborted", (status, seen)
        assert any(weight == 20 for _, _, weight in seen), seen
        assert "analysis" in (status["abort_reason"] or ""), status
        assert upstream_failures(shell.url, bad) > 0
        assert production(shell) == STABLE
        assert (status["weights"] or {}).get(bad, 0) == 0, status["weights"]
        assert traffic.versions() == {STABLE}  # every candidate failure was retried on stable

        # and `llmship up` stops its model server once the grace period is over
        wait_for(lambda: stopped(up, bad), "llmship up to stop 1.2.0's server", STOP_GRACE + 15)
        stopped_bad = time.monotonic()
        time.sleep(3)
        traffic.stop()
    traffic.assert_no_errors()
    report(
        "failing candidate",
        started,
        traffic,
        stack_ready=ready,
        aborted=aborted,
        candidate_stopped=stopped_bad,
    )
    print(f"candidate stopped {stopped_bad - aborted:.1f}s after the abort was seen")
    print(f"resumed after an analysis without data: {resumed} time(s)")
