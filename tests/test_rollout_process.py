"""The rollout controller as a real process: `llmship controller` drives a real gateway in
front of a real SmolLM2 model server (stable) and candidates served by `llmship serve`
with the `openai` backend, pointed at a tiny local upstream the test controls (good, or
answering 500), under steady client load. The Prometheus tests add a real Prometheus
scraping the gateway, and a real Alertmanager delivering its alerts to the gateway."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from _monitoring import Alertmanager, Prometheus, Receiver, shipped_alertmanager, shipped_rules
from _procs import FakeUpstream, GatewayProcess, LlmshipProcess, ModelServer
from llmship.registry import Registry, RolloutRecord
from llmship.release.bundled import bundled_spec
from llmship.release.spec import ReleaseSpec, parse_spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rollout_process")]  # one stack, one worker

TOKEN = "rollout-process-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ENV = "dev"
STABLE, GOOD, BAD = "smollm2-chat@1.0.0", "smollm2-chat@2.0.0", "smollm2-chat@3.0.0"
NEVER = "smollm2-chat@4.0.0"
"""Registered, but no model server ever serves it."""
PROC_ENV = {"LLMSHIP_ADMIN_TOKEN": TOKEN, "LLMSHIP_ENDPOINT_MAX_AGE": "3600"}


def real_release(version: str) -> ReleaseSpec:
    """The bundled SmolLM2 release with test-friendly settings (1 thread, small context)."""
    data = bundled_spec().to_dict()
    data["version"] = version
    data["runtime"] |= {"n_threads": 1, "n_ctx": 512}
    data["params"] |= {"temperature": 0.0, "max_tokens": 4}
    return parse_spec(data)


def fake_release(version: str, upstream: FakeUpstream) -> ReleaseSpec:
    return parse_spec(
        {
            "name": "smollm2-chat",
            "version": version,
            "backend": "openai",
            "model": {"base_url": upstream.url, "id": "fake"},
            "runtime": {"max_concurrency": 8, "timeout_s": 10},
        }
    )


# -- client load ---------------------------------------------------------------------------


@dataclass
class Load:
    """Clients sending `/predict` to the gateway in a loop, each answer recorded."""

    url: str
    clients: int = 3
    headers: dict[str, str] = field(default_factory=dict)
    answers: list[tuple[float, int, str]] = field(default_factory=list)
    """(monotonic time sent, status, x-llmship-version) of every request."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        with httpx.Client(timeout=60, headers=self.headers) as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    r = http.post(f"{self.url}/predict", json={"prompt": "Hi", "max_new_tokens": 2})
                    answer = (r.status_code, r.headers.get("x-llmship-version", ""))
                except httpx.HTTPError as exc:
                    answer = (0, type(exc).__name__)
                self.answers.append((sent, *answer))

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def errors(self) -> list[tuple[float, int, str]]:
        return [a for a in self.answers if a[1] != 200]

    def versions(self, since: float = 0.0, until: float = float("inf")) -> set[str]:
        """The versions that answered requests sent between ``since`` and ``until``."""
        return {a[2] for a in self.answers if since <= a[0] < until}


# -- the stack -----------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@dataclass
class Stack:
    workdir: Path
    registry: Registry
    gateway: GatewayProcess
    controller: LlmshipProcess
    good: FakeUpstream
    bad: FakeUpstream

    def start_controller(self) -> None:
        args = ["controller", "--env", ENV, "--interval", "200ms"]
        self.controller = LlmshipProcess(
            [*args, "--gateway-url", self.gateway.url], self.workdir, PROC_ENV
        )

    def llmship(self, *args: str) -> str:
        """Run a CLI command to its end; its output."""
        cmd = LlmshipProcess(list(args), self.workdir, PROC_ENV)
        try:
            assert cmd.wait(timeout=60) == 0, cmd.output()
        finally:
            cmd.stop()
        return cmd.output()

    def start_rollout(self, tmp_path: Path, spec: dict[str, Any], candidate: str) -> int:
        path = tmp_path / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec))
        self.llmship("rollout", "start", str(path), "--candidate", candidate, "--env", ENV)
        return self.registry.find_rollout(ENV, spec["name"]).id

    def rollout(self, rollout_id: int) -> RolloutRecord:
        return self.registry.get_rollout(rollout_id)

    def wait_phase(self, rollout_id: int, *phases: str, timeout: float = 60) -> RolloutRecord:
        def reached() -> bool:
            self.assert_controller_alive()
            return self.rollout(rollout_id).phase in phases

        wait_until(reached, f"phase {phases}", timeout)
        return self.rollout(rollout_id)

    def assert_controller_alive(self) -> None:
        if self.controller.proc.poll() is not None:
            raise AssertionError(f"the controller exited:\n{self.controller.output()}")

    def traffic(self) -> dict[str, Any]:
        r = httpx.get(f"{self.gateway.url}/api/v1/traffic", headers=ADMIN, timeout=10)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def canary_weight(self) -> float:
        canary = self.traffic().get("canary")
        return float(canary["weight"]) if canary else 0.0

    def events(self, rollout_id: int, kind: str | None = None) -> list[str]:
        return [
            e.message
            for e in self.registry.rollout_events(rollout_id)
            if kind is None or e.kind == kind
        ]

    def weights_set(self, since_event: int) -> list[float]:
        """The canary weights the `traffic.changed` events after ``since_event`` set, in
        order; a change that keeps the weight (a promotion adding the preview) is not one."""
        out: list[float] = []
        for e in reversed(self.registry.events(limit=1000, kind="traffic.changed")):
            canary = e.data.get("canary")
            weight = float(canary["weight"]) if canary else 0.0
            if e.id > since_event and (not out or out[-1] != weight):
                out.append(weight)
        return out

    def last_event_id(self) -> int:
        events = self.registry.events(limit=1)
        return events[0].id if events else 0

    def production(self) -> str | None:
        target = self.registry.get_alias(ENV, "production")
        return target.ref if target is not None else None

    def wait_production(self, ref: str) -> None:
        """Until the ``production`` alias is on ``ref``: a rollout's promotion is saved
        (Healthy) before the controller carries it out."""
        wait_until(lambda: self.production() == ref, f"production on {ref}")

    def reset_production(self) -> None:
        """Back to the starting point: production on STABLE, the gateway following."""
        if self.production() != STABLE:
            self.registry.set_alias(ENV, "production", STABLE, actor="test", reason="reset")
        wait_until(lambda: self.traffic()["stable"] == STABLE, "stable back on 1.0.0")
        self.wait_gateway_synced()

    def wait_gateway_stable(self, ref: str) -> None:
        """Until the gateway routes stable traffic to ``ref``."""
        wait_until(
            lambda: httpx.get(f"{self.gateway.url}/readyz").json().get("stable") == ref,
            f"the gateway to route stable traffic to {ref}",
        )

    def wait_gateway_synced(self) -> None:
        """Until the gateway routes by the registry's latest policy (it polls it)."""

        def synced() -> bool:
            policy = self.traffic()
            seen = httpx.get(f"{self.gateway.url}/readyz", timeout=10).json()
            return (seen.get("stable"), seen.get("revision")) == (
                policy["stable"],
                policy["revision"],
            )

        wait_until(synced, "the gateway to follow the registry's policy")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway, a controller, and model servers for STABLE (real), GOOD and BAD (fake
    upstreams) of env dev, all started at once."""
    workdir = tmp_path_factory.mktemp("rollout")
    home = workdir / ".llmship"
    registry = Registry.open(f"sqlite:///{home / 'registry.db'}", home=home)
    good, bad = FakeUpstream(), FakeUpstream()
    bad.failing = True
    registry.register(real_release("1.0.0"), actor="test")
    registry.register(fake_release("2.0.0", good), actor="test")
    registry.register(fake_release("3.0.0", bad), actor="test")
    registry.register(fake_release("4.0.0", good), actor="test")
    registry.set_alias(ENV, "production", STABLE, actor="test", reason="first")
    servers = [
        ModelServer(workdir, "--release", ref, "--env", ENV, env=PROC_ENV)
        for ref in (STABLE, GOOD, BAD)
    ]
    gateway = GatewayProcess(workdir, env=PROC_ENV)
    stack = Stack(workdir, registry, gateway, gateway, good, bad)
    stack.start_controller()
    try:
        for server in servers:
            server.wait_ready(timeout=120)
        r = httpx.post(
            f"{servers[0].url}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, timeout=120
        )
        assert r.status_code == 200, r.text  # the model's first answer is slow
        gateway.wait_ready()
        yield stack
    finally:
        for proc in (stack.controller, gateway, *servers):
            proc.stop()
        registry.close()
        good.close()
        bad.close()


@pytest.fixture
def fresh(stack: Stack) -> Iterator[Stack]:
    stack.reset_production()
    stack.good.failing = False
    stack.good.text = "ok"
    yield stack
    active = stack.registry.active_rollout(ENV)
    if active is not None:  # a failed test must not hold the environment
        stack.registry.add_rollout_intent(active.id, "abort", actor="test", reason="cleanup")
        stack.wait_phase(active.id, "Aborted", "Healthy")
    stack.reset_production()


def error_rate_template(**metric: Any) -> dict[str, Any]:
    return {
        "name": "errors",
        "metrics": [
            {
                "name": "error-rate",
                "interval": "1s",
                "initialDelay": "1s",
                "inconclusiveLimit": 30,
                "successCondition": "result <= 0.05",
                "provider": {"builtin": {"metric": "error_rate", "window": "5s"}},
                **metric,
            }
        ],
    }


# -- the scenarios -------------------------------------------------------------------------


def test_a_good_canary_goes_20_40_100_under_load_and_is_promoted(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    since = stack.last_event_id()
    # Given a canary 20 -> 40 -> 100 with short pauses and a background error-rate analysis
    spec = {
        "name": "good-canary",
        "strategy": {
            "canary": {
                "steps": [
                    {"setWeight": 20},
                    {"pause": {"duration": "3s"}},
                    {"setWeight": 40},
                    {"pause": {"duration": "3s"}},
                    {"setWeight": 100},
                ],
                "analysis": {"templates": [{"templateName": "errors"}]},
            }
        },
        "analysisTemplates": [error_rate_template()],
    }
    # When it runs under steady client load
    with Load(stack.gateway.url) as load:
        rollout_id = stack.start_rollout(tmp_path, spec, GOOD)
        record = stack.wait_phase(rollout_id, "Healthy", "Aborted", "Paused", timeout=60)
        while record.phase == "Paused" and record.pause_reason and "pause" in record.message:
            record = stack.wait_phase(rollout_id, "Healthy", "Aborted", timeout=60)
        stack.wait_gateway_stable(GOOD)
        promoted_at = time.monotonic()
        time.sleep(1.0)
    # Then it is promoted, the weights went 20, 40, 100 in order and no client saw an error
    record = stack.rollout(rollout_id)
    assert record.phase == "Healthy", (record.message, stack.events(rollout_id))
    assert stack.production() == GOOD
    assert load.errors() == []
    assert GOOD in load.versions() and STABLE in load.versions()
    assert load.versions(since=promoted_at) == {GOOD}
    weights = [w for w in stack.weights_set(since) if w]
    assert weights == [20.0, 40.0, 100.0], weights
    measurements = stack.registry.list_measurements(rollout_id)
    assert measurements and all(m.phase in {"Successful", "Inconclusive"} for m in measurements)
    assert any(m.phase == "Successful" for m in measurements)
    # and the alias history shows the move, by the controller, for the rollout
    move = stack.registry.alias_history(ENV, "production")[-1]
    assert (move.from_ref, move.to_ref, move.actor) == (STABLE, GOOD, "controller")
    assert "good-canary" in move.reason


def test_an_erroring_candidate_is_aborted_and_no_client_sees_an_error(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    # Given a candidate whose upstream answers 500 to every request
    spec = {
        "name": "bad-canary",
        "strategy": {
            "canary": {
                "steps": [{"setWeight": 30}, {"pause": {"duration": "60s"}}, {"setWeight": 100}],
                "analysis": {"templates": [{"templateName": "errors"}]},
            }
        },
        "analysisTemplates": [error_rate_template()],
    }
    before = stack.bad.hits
    # When it is rolled out under steady client load
    with Load(stack.gateway.url) as load:
        rollout_id = stack.start_rollout(tmp_path, spec, BAD)
        record = stack.wait_phase(rollout_id, "Aborted", "Healthy", timeout=60)
        wait_until(lambda: stack.canary_weight() == 0, "the canary to be gone")
        aborted_at = time.monotonic()
        time.sleep(1.5)
        hits_after_abort = stack.bad.hits
        time.sleep(1.5)
    # Then the analysis aborted it, all traffic is back on stable
    assert record.phase == "Aborted", (record.message, stack.events(rollout_id))
    assert "error-rate" in (record.abort_reason or ""), record.abort_reason
    assert stack.bad.hits > before  # the candidate did get traffic
    assert stack.bad.hits == hits_after_abort  # and gets none any more
    assert stack.production() == STABLE
    assert load.versions(since=aborted_at + 1.0) == {STABLE}
    failed = [m for m in stack.registry.list_measurements(rollout_id) if m.phase == "Failed"]
    assert failed and failed[0].value > 0.05
    # and during the whole rollout no client saw an error: the gateway retried on stable
    assert load.errors() == []
    assert len(load.answers) > 5


def alert_payload(labels: dict[str, str], status: str = "firing") -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "LlmHighErrorRate", "action": "rollback", **labels},
        "annotations": {"summary": "error rate above 5%"},
        "startsAt": "2024-05-01T12:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "c0ffee0123456789",
    }
    return {
        "version": "4",
        "groupKey": '{}:{action="rollback"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "llmship",
        "groupLabels": {"action": "rollback"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


def test_an_alertmanager_alert_aborts_a_running_rollout_once(fresh: Stack, tmp_path: Path) -> None:
    stack = fresh
    # Given a canary that holds 20% of the traffic until a person promotes it
    spec = {
        "name": "alerted-canary",
        "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
    }
    rollout_id = stack.start_rollout(tmp_path, spec, GOOD)
    wait_until(lambda: stack.rollout(rollout_id).step_index == 1, "the pause step")
    wait_until(lambda: stack.canary_weight() == 20, "the canary at 20%")
    alerts = f"{stack.gateway.url}/api/v1/alerts"
    # When a resolved alert arrives, nothing happens
    resolved = httpx.post(alerts, json=alert_payload({"version": GOOD}, "resolved"), headers=ADMIN)
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["aborted"] == []
    # When Alertmanager delivers a firing rollback alert naming the candidate
    r = httpx.post(alerts, json=alert_payload({"version": GOOD}), headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["aborted"] == ["alerted-canary"]
    # and delivers it again at once (the controller may not have applied it yet)
    again = httpx.post(alerts, json=alert_payload({"version": GOOD}), headers=ADMIN)
    assert again.status_code == 200, again.text
    assert again.json()["aborted"] == []
    # Then the rollout is aborted once, by alertmanager, with the alert as the reason
    record = stack.wait_phase(rollout_id, "Aborted", "Healthy")
    assert record.phase == "Aborted"
    assert "LlmHighErrorRate" in (record.abort_reason or ""), record.abort_reason
    wait_until(lambda: stack.canary_weight() == 0, "all traffic back on stable")
    intents = stack.registry.list_rollout_intents(rollout_id)
    assert [(i.kind, i.actor, i.outcome) for i in intents] == [("abort", "alertmanager", "applied")]
    events = stack.events(rollout_id)
    assert len(stack.events(rollout_id, "rollout.aborted")) == 1
    # When the same alert is delivered once more, after the abort
    late = httpx.post(alerts, json=alert_payload({"version": GOOD}), headers=ADMIN)
    # Then it changes nothing
    assert late.status_code == 200, late.text
    assert late.json()["aborted"] == []
    time.sleep(1.0)  # five controller passes
    assert stack.registry.list_rollout_intents(rollout_id) == intents
    assert stack.events(rollout_id) == events
    assert stack.rollout(rollout_id).phase == "Aborted"
    # and a malformed payload is refused
    assert httpx.post(alerts, json={"version": "4"}, headers=ADMIN).status_code == 400


def test_a_controller_killed_at_every_step_resumes_without_skipping_or_repeating(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    since = stack.last_event_id()
    # Given a canary of five weights with short pauses
    steps: list[dict[str, Any]] = []
    for weight in (10, 25, 50, 75):
        steps += [{"setWeight": weight}, {"pause": {"duration": "2s"}}]
    steps.append({"setWeight": 100})
    spec = {"name": "killed-canary", "strategy": {"canary": {"steps": steps}}}
    rollout_id = stack.start_rollout(tmp_path, spec, GOOD)
    # When the controller is SIGKILLed as soon as it reaches each new step, and restarted
    seen: list[tuple[int, float]] = []
    deadline = time.monotonic() + 90
    while stack.rollout(rollout_id).phase not in {"Healthy", "Aborted"}:
        assert time.monotonic() < deadline, stack.events(rollout_id)
        record = stack.rollout(rollout_id)
        running = record.phase in {"Progressing", "Paused"}
        if running and (not seen or record.step_index != seen[-1][0]):
            os.kill(stack.controller.proc.pid, signal.SIGKILL)
            stack.controller.proc.wait(timeout=10)
            stack.controller.stop()
            killed = stack.rollout(rollout_id)
            seen.append((killed.step_index, float(killed.state.get("weight", 0.0))))
            # Then, while it is dead, the stored state holds still
            time.sleep(0.5)
            assert stack.rollout(rollout_id).step_index == killed.step_index
            stack.start_controller()
        time.sleep(0.05)
    # Then the rollout finished, each step began exactly once and in order
    record = stack.rollout(rollout_id)
    assert record.phase == "Healthy", (record.message, stack.events(rollout_id))
    assert len(seen) >= 3, seen
    assert [i for i, _ in seen] == sorted({i for i, _ in seen}), seen
    step_events = stack.events(rollout_id, "rollout.step")
    numbers = [int(re.findall(r"\bstep (\d+)/", m)[0]) for m in step_events]
    assert numbers == list(range(1, len(steps) + 1)), step_events
    # the promotion is saved before it is carried out: a controller killed in between
    # finishes it on its next pass
    stack.wait_production(GOOD)
    # and every weight was set once, in order (a repeated action changes nothing)
    weights = [w for w in stack.weights_set(since) if w]
    assert weights == [10.0, 25.0, 50.0, 75.0, 100.0], weights


def quiet_errors_template() -> dict[str, Any]:
    """An error-rate analysis that waits longer than its window: traffic from before the
    run cannot count, so without new traffic it measures no data."""
    return {
        "name": "errors",
        "metrics": [
            {
                "name": "error-rate",
                "initialDelay": "4s",
                "interval": "1s",
                "count": 2,
                "successCondition": "result <= 0.05",
                "provider": {"builtin": {"metric": "error_rate", "window": "3s"}},
            }
        ],
    }


def quiet_canary(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "strategy": {
            "canary": {
                "steps": [
                    {"setWeight": 20},
                    {"analysis": {"templates": [{"templateName": "errors"}]}},
                    {"setWeight": 100},
                ]
            }
        },
        "analysisTemplates": [quiet_errors_template()],
    }


def test_no_data_pauses_for_a_person_who_aborts_or_resumes(fresh: Stack, tmp_path: Path) -> None:
    stack = fresh
    # Given a canary at 20% whose analysis step needs traffic, and no client sends any
    rollout_id = stack.start_rollout(tmp_path, quiet_canary("quiet-abort"), GOOD)
    # Then the analysis is Inconclusive and the rollout pauses for a person, at 20%
    record = stack.wait_phase(rollout_id, "Paused", "Aborted", "Healthy", timeout=60)
    assert record.phase == "Paused", (record.message, stack.events(rollout_id))
    assert "InconclusiveAnalysis" in (record.pause_reason or ""), record.pause_reason
    [measurement] = stack.registry.list_measurements(rollout_id)
    assert measurement.phase == "Inconclusive"
    assert "no data" in measurement.message, measurement.message
    time.sleep(1.0)  # five controller passes: it waits
    assert stack.rollout(rollout_id).phase == "Paused"
    assert stack.canary_weight() == 20
    # When the person aborts it with the CLI
    out = stack.llmship("rollout", "abort", "quiet-abort", "--env", ENV, "--reason", "no traffic")
    assert "quiet-abort" in out
    # Then it is aborted for their reason and all traffic is back on stable
    record = stack.wait_phase(rollout_id, "Aborted")
    assert record.abort_reason == "no traffic", record.abort_reason
    wait_until(lambda: stack.canary_weight() == 0, "the canary to be gone")
    assert stack.production() == STABLE

    # Given the same canary once more, paused the same way
    since = stack.last_event_id()
    rollout_id = stack.start_rollout(tmp_path, quiet_canary("quiet-resume"), GOOD)
    record = stack.wait_phase(rollout_id, "Paused", "Aborted", "Healthy", timeout=60)
    assert "InconclusiveAnalysis" in (record.pause_reason or ""), record.pause_reason
    # When the person resumes it, with clients calling
    with Load(stack.gateway.url, clients=2) as load:
        stack.llmship("rollout", "resume", "quiet-resume", "--env", ENV, "-r", "looked fine")
        record = stack.wait_phase(rollout_id, "Healthy", "Aborted", "Paused", timeout=60)
        stack.wait_gateway_stable(GOOD)
    # Then, as in Argo Rollouts, it goes on past the Inconclusive step and is promoted
    assert record.phase == "Healthy", (record.message, stack.events(rollout_id))
    assert stack.production() == GOOD
    resumed = " ".join(stack.events(rollout_id, "rollout.resumed"))
    assert "looked fine" in resumed, resumed
    assert [m.phase for m in stack.registry.list_measurements(rollout_id)] == ["Inconclusive"]
    assert [w for w in stack.weights_set(since) if w] == [20.0, 100.0]
    assert load.errors() == []


def test_a_candidate_that_never_becomes_ready_is_aborted_at_the_progress_deadline(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    since = stack.last_event_id()
    # Given a release that no model server serves, and a 3 s progress deadline
    spec = {
        "name": "never-ready",
        "progressDeadline": "3s",
        "strategy": {"canary": {"steps": [{"setWeight": 20}, {"setWeight": 100}]}},
    }
    started = time.monotonic()
    # When it is rolled out
    rollout_id = stack.start_rollout(tmp_path, spec, NEVER)
    record = stack.wait_phase(rollout_id, "Aborted", "Healthy", timeout=60)
    # Then it is aborted at the deadline, saying why, and it never had any traffic
    assert record.phase == "Aborted"
    assert time.monotonic() - started >= 3.0
    assert "progress deadline (3s) exceeded" in (record.abort_reason or ""), record.abort_reason
    assert f"{NEVER} has no ready model server" in (record.abort_reason or "")
    assert [w for w in stack.weights_set(since) if w] == []
    assert stack.production() == STABLE


def test_blue_green_previews_switches_and_switches_back_when_it_fails_after(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    # Given a blue-green rollout: smoke checks on the preview, automatic switch after 4 s,
    # and an error-rate analysis after the switch
    spec = {
        "name": "blue-green",
        "strategy": {
            "blueGreen": {
                "autoPromotionEnabled": True,
                "autoPromotionSeconds": 4,
                "prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]},
                "postPromotionAnalysis": {"templates": [{"templateName": "live"}]},
            }
        },
        "analysisTemplates": [
            {
                "name": "smoke",
                "metrics": [
                    {
                        "name": "preview-errors",
                        "initialDelay": "2s",
                        "successCondition": "result <= 0.01",
                        "provider": {
                            "builtin": {"metric": "error_rate", "window": "2s", "minSamples": 3}
                        },
                    }
                ],
            },
            {
                "name": "live",
                "metrics": [
                    {
                        "name": "error-rate",
                        "interval": "1s",
                        "count": 30,
                        "inconclusiveLimit": 30,
                        "successCondition": "result <= 0.05",
                        "provider": {"builtin": {"metric": "error_rate", "window": "2s"}},
                    }
                ],
            },
        ],
    }
    since = stack.last_event_id()
    preview = Load(stack.gateway.url, clients=1, headers={"X-Llmship-Variant": "preview"})
    # When it runs while clients call, some of them on the preview route
    with Load(stack.gateway.url, clients=2) as load, preview:
        rollout_id = stack.start_rollout(tmp_path, spec, GOOD)
        wait_until(lambda: stack.traffic().get("preview") == GOOD, "the preview route")
        previewed_at = time.monotonic()
        wait_until(lambda: stack.production() == GOOD, "the automatic switch", timeout=60)
        switched_at = time.monotonic()
        # Then until the switch only preview requests reached the candidate
        assert load.versions(previewed_at + 1.0, switched_at - 0.5) == {STABLE}
        assert preview.versions(previewed_at + 1.0, switched_at - 0.5) == {GOOD}
        stack.wait_gateway_stable(GOOD)
        # When the candidate starts failing under all the traffic
        stack.good.failing = True
        record = stack.wait_phase(rollout_id, "Aborted", "Healthy", timeout=60)
        wait_until(lambda: stack.production() == STABLE, "the switch back")
    # Then the post-promotion analysis failed and production went back to stable
    assert record.phase == "Aborted", (record.message, stack.events(rollout_id))
    assert "post-promotion analysis" in (record.abort_reason or ""), record.abort_reason
    measurements = stack.registry.list_measurements(rollout_id)
    assert [m.phase for m in measurements if m.metric == "preview-errors"] == ["Successful"]
    assert "Failed" in [m.phase for m in measurements if m.metric == "error-rate"]
    history = stack.registry.alias_history(ENV, "production")
    there, back = history[-2:]
    assert (there.from_ref, there.to_ref, there.actor) == (STABLE, GOOD, "controller")
    assert "automatic promotion" in there.reason
    # (autoPromotionSeconds after the preview, by the registry's clock, give or take a pass)
    [shown] = [
        e
        for e in stack.registry.events(limit=1000, kind="traffic.changed")
        if e.id > since and e.data.get("preview") == GOOD
    ][-1:]
    assert (there.at - shown.at).total_seconds() >= 3.5
    assert (back.from_ref, back.to_ref, back.actor) == (GOOD, STABLE, "controller")
    assert stack.traffic().get("preview") is None


def ask(http: httpx.Client, url: str, user: str) -> tuple[str, str]:
    """One /predict as ``user``: (version, query id)."""
    r = http.post(
        f"{url}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, headers={"X-User-Id": user}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query_id"] == r.headers["x-request-id"]
    return body["version"], body["query_id"]


@pytest.mark.parametrize(
    ("candidate_ratings", "phase", "production"),
    [((4, 5), "Healthy", GOOD), ((1, 2), "Aborted", STABLE)],
    ids=["better-rated-wins", "worse-rated-loses"],
)
def test_an_ab_experiment_is_decided_by_feedback_ratings(
    fresh: Stack,
    tmp_path: Path,
    candidate_ratings: tuple[int, int],
    phase: str,
    production: str,
) -> None:
    stack = fresh
    # Given a 50/50 experiment for 12 s decided by mean rating (Mann-Whitney, alpha 0.05)
    spec = {
        "name": f"ab-{phase.lower()}",
        "strategy": {
            "experiment": {
                "duration": "12s",
                "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
                "decision": {"metric": "feedback_mean", "alpha": 0.05, "minSamples": 8},
            }
        },
    }
    rollout_id = stack.start_rollout(tmp_path, spec, GOOD)
    wait_until(lambda: stack.traffic().get("experiment") is not None, "the experiment")
    stack.wait_gateway_synced()
    # When users ask, each keeps their variant, and rate what they got: stable's
    # answers 2-3, the candidate's as the case says
    seen: dict[str, str] = {}
    rated = {STABLE: 0, GOOD: 0}
    with httpx.Client(timeout=60) as http:
        user = 0
        while min(rated.values()) < 10 and stack.rollout(rollout_id).step_index == 0:
            name = f"user-{user}"
            user += 1
            for _ in range(2):
                version, query_id = ask(http, stack.gateway.url, name)
                assert seen.setdefault(name, version) == version, f"{name} changed variant"
                scale = candidate_ratings if version == GOOD else (2, 3)
                rating = scale[rated[version] % 2]
                r = http.post(
                    f"{stack.gateway.url}/feedback", json={"query_id": query_id, "rating": rating}
                )
                assert r.status_code in (200, 201), r.text
                rated[version] += 1
    assert min(rated.values()) >= 10, f"too few answers rated in the experiment: {rated}"
    assert set(seen.values()) == {STABLE, GOOD}
    # Then the decision after the duration follows the ratings
    record = stack.wait_phase(rollout_id, "Healthy", "Aborted", "Paused", timeout=60)
    assert record.phase == phase, (record.message, stack.events(rollout_id))
    stack.wait_production(production)
    [decision] = stack.registry.list_measurements(rollout_id)
    assert decision.metric == "feedback-mean"
    assert decision.value < 0.05  # the p-value
    assert "p=" in decision.message
    wait_until(lambda: stack.traffic().get("experiment") is None, "the experiment to end")


def shadow_spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "strategy": {
            "shadow": {
                "percent": 100,
                "duration": "6s",
                "analysis": {"templates": [{"templateName": "similar"}]},
            }
        },
        "analysisTemplates": [
            {
                "name": "similar",
                "metrics": [
                    {
                        "name": "similarity",
                        "interval": "1s",
                        "inconclusiveLimit": 30,
                        "successCondition": "result >= 0.6",
                        "provider": {
                            "builtin": {
                                "metric": "shadow_similarity",
                                "window": "2s",
                                "minSamples": 2,
                            }
                        },
                    }
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    ("same_answers", "phase", "production"),
    [(True, "Healthy", GOOD), (False, "Aborted", STABLE)],
    ids=["similar-is-promoted", "different-is-aborted"],
)
def test_a_shadow_rollout_is_decided_by_answer_similarity(
    fresh: Stack, tmp_path: Path, same_answers: bool, phase: str, production: str
) -> None:
    stack = fresh
    # Given a candidate that answers exactly what stable answers, or something else
    r = httpx.post(
        f"{stack.gateway.url}/predict", json={"prompt": "Hi", "max_new_tokens": 2}, timeout=60
    )
    assert r.status_code == 200, r.text
    stable_answer = r.json()["response"]
    stack.good.text = stable_answer if same_answers else "entirely unrelated words"
    hits = stack.good.hits
    # When it shadows all requests for 6 s under client load
    with Load(stack.gateway.url) as load:
        rollout_id = stack.start_rollout(tmp_path, shadow_spec(f"shadow-{phase.lower()}"), GOOD)
        record = stack.wait_phase(rollout_id, "Healthy", "Aborted", "Paused", timeout=60)
        done_at = time.monotonic()
    # Then the similarity decided
    assert record.phase == phase, (record.message, stack.events(rollout_id))
    stack.wait_production(production)
    assert stack.good.hits > hits  # the candidate did see the mirrored requests
    measured = stack.registry.list_measurements(rollout_id)
    values = [m.value for m in measured if m.phase in ("Successful", "Failed")]
    assert values, stack.events(rollout_id)
    if same_answers:
        assert min(values) == pytest.approx(1.0)
    else:
        assert max(values) < 0.6
    # and every client got stable's answer, with no error
    assert load.errors() == []
    early = [(round(t - done_at, 2), v) for t, _, v in load.answers if v != STABLE]
    assert load.versions(until=done_at - 1.0) == {STABLE}, (early, stack.events(rollout_id))


# -- Prometheus and Alertmanager ------------------------------------------------------------

SHIPPED_RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "rules.yml"


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus scraping the gateway every second, with the shipped rules (and
    no Alertmanager: their alerts go nowhere)."""
    target = stack.gateway.url.removeprefix("http://")
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), [target], [SHIPPED_RULES])
    try:
        prom.wait_ready()
        yield prom
    finally:
        prom.stop()


def test_the_shipped_rules_load_and_find_the_gateways_metrics(
    fresh: Stack, prometheus: Prometheus
) -> None:
    stack = fresh
    for _ in range(3):
        r = httpx.post(f"{stack.gateway.url}/predict", json={"prompt": "Hi", "max_new_tokens": 2})
        assert r.status_code == 200
    # the metric families the rules query, with their types, as Prometheus scraped them
    wanted = {
        "http_requests_total": "counter",
        "llmship_upstream_failures_total": "counter",
        "llm_time_to_first_token_seconds": "histogram",
        "llmship_registry_up": "gauge",
    }

    def scraped() -> dict[str, str]:
        meta = httpx.get(f"{prometheus.url}/api/v1/metadata", timeout=10).json()["data"]
        return {name: meta[name][0]["type"] for name in wanted if name in meta}

    wait_until(lambda: scraped() == wanted, "every metric the rules use", timeout=30)
    rules = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
    assert loaded == dict.fromkeys(
        ["HighErrorRate", "CandidateFailing", "SlowFirstToken", "RegistryUnreachable"], "ok"
    )


def prometheus_canary(name: str, address: str) -> dict[str, Any]:
    """A canary judged by a PromQL query: no upstream failures of the candidate in the
    last 4 s (what Prometheus scraped from the gateway)."""
    query = (
        'sum(increase(llmship_upstream_failures_total{version="{{args.version}}"}[4s]))'
        " or vector(0)"
    )
    return {
        "name": name,
        "strategy": {
            "canary": {
                "steps": [{"setWeight": 30}, {"pause": {"duration": "6s"}}, {"setWeight": 100}],
                "analysis": {"templates": [{"templateName": "prom"}]},
            }
        },
        "analysisTemplates": [
            {
                "name": "prom",
                "metrics": [
                    {
                        "name": "upstream-failures",
                        "initialDelay": "4s",
                        "interval": "1s",
                        "successCondition": "result[0] == 0",
                        "provider": {"prometheus": {"address": address, "query": query}},
                    }
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    ("candidate", "phase"),
    [(GOOD, "Healthy"), (BAD, "Aborted")],
    ids=["no-failures-promoted", "failures-aborted"],
)
def test_a_prometheus_analysis_judges_the_canary(
    fresh: Stack, prometheus: Prometheus, tmp_path: Path, candidate: str, phase: str
) -> None:
    stack = fresh
    # Given a canary whose analysis is a PromQL query on what Prometheus scraped
    spec = prometheus_canary(f"prom-{phase.lower()}", prometheus.url)
    # When it runs under client load
    with Load(stack.gateway.url) as load:
        rollout_id = stack.start_rollout(tmp_path, spec, candidate)
        record = stack.wait_phase(rollout_id, "Healthy", "Aborted", timeout=90)
        stack.wait_production(GOOD if phase == "Healthy" else STABLE)
    # Then the query's answer decided, and no client saw an error either way
    assert record.phase == phase, (record.message, stack.events(rollout_id))
    values = [m.value for m in stack.registry.list_measurements(rollout_id)]
    if phase == "Healthy":
        assert values and all(v == [0.0] for v in values), values
    else:
        assert "upstream-failures" in (record.abort_reason or ""), record.abort_reason
        assert values[-1][0] > 0, values
    assert load.errors() == []


def test_a_prometheus_alert_delivered_by_alertmanager_aborts_the_rollout(
    fresh: Stack, tmp_path: Path
) -> None:
    stack = fresh
    # Given Prometheus with the shipped alerting rules, and Alertmanager with the shipped
    # config: action=rollback alerts to the gateway's webhook with the admin token, and
    # every alert to Slack (a stand-in here). Only the rules' `for:` durations are
    # rewritten (to 0s), so the test does not wait minutes; the expressions are as shipped.
    token = tmp_path / "admin-token"
    token.write_text(TOKEN)
    rules = shipped_rules(tmp_path / "rules.yml", for_="0s")
    workdir = tmp_path / "alertmanager"
    workdir.mkdir()
    with Receiver() as slack:

        def posted() -> list[str]:
            return [body["attachments"][0]["text"] for _, body in slack.posts]

        (workdir / "slack-webhook-url").write_text(f"{slack.url}/slack")
        alertmanager = Alertmanager(workdir, shipped_alertmanager(stack.gateway.url, token))
        target = stack.gateway.url.removeprefix("http://")
        prom: Prometheus | None = None
        try:
            alertmanager.wait_ready()
            prom = Prometheus(tmp_path / "prometheus", [target], [rules], alertmanager.url)
            prom.wait_ready()
            # When a failing candidate is rolled out with no analysis of its own, and holds
            # 30% until a person promotes it
            spec = {
                "name": "alerted-by-prometheus",
                "strategy": {"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}},
            }
            with Load(stack.gateway.url) as load:
                rollout_id = stack.start_rollout(tmp_path, spec, BAD)
                record = stack.wait_phase(rollout_id, "Aborted", "Healthy", timeout=90)
                wait_until(lambda: stack.canary_weight() == 0, "all traffic back on stable")
            wait_until(
                lambda: any("CandidateFailing" in text for text in posted()),
                "the alert posted to Slack too",
            )
        finally:
            if prom is not None:
                prom.stop()
            alertmanager.stop()
    # Then the shipped rule's alert, fired by Prometheus and delivered by Alertmanager,
    # aborted it, and Slack heard of it
    assert record.phase == "Aborted", (record.message, stack.events(rollout_id))
    assert "CandidateFailing" in (record.abort_reason or ""), record.abort_reason
    assert any("firing: CandidateFailing" in text for text in posted()), posted()
    intents = stack.registry.list_rollout_intents(rollout_id)
    assert [(i.kind, i.actor) for i in intents] == [("abort", "alertmanager")]
    assert stack.production() == STABLE
    assert load.errors() == []
