"""The promotion guard: the pure decision, the `gates: require:` loader, and the
commands that move production (`alias set`, `rollout start`, `traffic set
--promote-preview`, the admin API) through the real command line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from _cli import Run, cli_runner
from _registry import chat_registry
from llmship.errors import GateError, SpecError
from llmship.gates_config import load_requirements
from llmship.registry import GateRun, Registry
from llmship.release.promotion_guard import check_promotion, missing_gates

REQUIRE = {"gates": {"require": {"prod": ["eval", "loadtest"], "staging": ["eval"]}}}
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def run_of(kind: str, passed: bool, run_id: int = 1) -> GateRun:
    return GateRun(
        id=run_id,
        kind=kind,
        ref="chat@1.1.0",
        baseline_ref=None,
        env="dev",
        passed=passed,
        forced=False,
        summary={},
        report={},
        created_at=T0,
        created_by="ci",
    )


# -- the pure decision ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("required", "latest", "missing"),
    [
        ([], {}, []),
        (["eval"], {}, ["eval"]),
        (["eval"], {"eval": run_of("eval", True)}, []),
        (["eval"], {"eval": run_of("eval", False)}, ["eval"]),
        (["eval", "loadtest"], {"eval": run_of("eval", True)}, ["loadtest"]),
        (
            ["eval", "loadtest"],
            {"eval": run_of("eval", False), "loadtest": run_of("loadtest", False)},
            ["eval", "loadtest"],
        ),
        (
            ["loadtest", "eval"],
            {"eval": run_of("eval", True), "loadtest": run_of("loadtest", True)},
            [],
        ),
        ([], {"eval": run_of("eval", False)}, []),  # a failed run nobody requires
        (["eval", "eval"], {}, ["eval"]),
    ],
)
def test_missing_gates(required: list[str], latest: dict[str, GateRun], missing: list[str]) -> None:
    assert missing_gates(required, latest) == missing


class FakeRecords:
    def __init__(self, latest: dict[str, GateRun]) -> None:
        self.latest = latest
        self.events: list[tuple[str, str, dict[str, Any] | None]] = []

    def latest_gate_runs(self, ref: str) -> dict[str, GateRun]:
        return self.latest

    def record_event(
        self, kind: str, subject: str, message: str, *, actor: str, data: Any = None
    ) -> Any:
        self.events.append((kind, subject, data))


def test_check_promotion_refuses_names_and_forces() -> None:
    records = FakeRecords({"eval": run_of("eval", False, run_id=7)})
    with pytest.raises(GateError) as caught:
        check_promotion(
            records,
            "prod",
            "chat@1.1.0",
            force=False,
            reason="go",
            actor="me",
            required=["eval", "loadtest"],
        )
    assert caught.value.status_code == 409
    assert caught.value.code == "gates_missing"
    message = caught.value.message
    assert "eval: run 7 failed" in message and "loadtest: no run recorded" in message
    assert "llmship eval --dataset PATH --candidate chat@1.1.0" in message
    assert "llmship loadtest --release chat@1.1.0" in message and "--force" in message
    assert records.events == []
    reason = check_promotion(
        records,
        "prod",
        "chat@1.1.0",
        force=True,
        reason="hotfix",
        actor="me",
        required=["eval", "loadtest"],
    )
    assert reason == "[forced] hotfix"
    [(kind, subject, data)] = records.events
    assert (kind, subject) == ("gate.forced", "chat@1.1.0")
    assert data == {
        "env": "prod",
        "ref": "chat@1.1.0",
        "missing": ["eval", "loadtest"],
        "reason": "hotfix",
        "actor": "me",
    }


def test_nothing_required_reads_nothing() -> None:
    class Untouchable:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the registry was read: {name}")

    reason = check_promotion(
        Untouchable(), "prod", "chat@1.1.0", force=False, reason="r", actor="me", required=[]
    )
    assert reason == "r"


# -- the loader ---------------------------------------------------------------------


def test_load_requirements(tmp_path: Path) -> None:
    path = tmp_path / "llmship.yaml"
    path.write_text(yaml.safe_dump({**REQUIRE, "gates": {**REQUIRE["gates"], "eval": {}}}))
    assert load_requirements(path) == {"prod": ("eval", "loadtest"), "staging": ("eval",)}
    path.write_text(yaml.safe_dump({"gates": {"eval": {"alpha": 0.05}}}))
    assert load_requirements(path) == {}


def test_reading_the_requirements_does_not_load_the_eval_package(tmp_path: Path) -> None:
    path = tmp_path / "llmship.yaml"
    path.write_text(yaml.safe_dump(REQUIRE))
    code = (
        "import sys; from pathlib import Path; "
        "from llmship.release.promotion_guard import required_gates; "
        f"assert required_gates('prod', Path({str(path)!r})) == ('eval', 'loadtest'); "
        "print(sorted(m for m in sys.modules if m.startswith('llmship.eval')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    ("require", "problem"),
    [
        (["eval"], "gates.require: must be a mapping"),
        ({"prod": ["evals"]}, "gates.require.prod: unknown gate 'evals'"),
        ({"prod": {"eval": 1}}, "gates.require.prod: must be a list"),
    ],
)
def test_bad_requirements(tmp_path: Path, require: Any, problem: str) -> None:
    path = tmp_path / "llmship.yaml"
    path.write_text(yaml.safe_dump({"gates": {"require": require}}))
    with pytest.raises(SpecError, match=problem):
        load_requirements(path)


# -- through the command line ---------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """chat@1.0.0 (production in prod) and chat@1.1.0, the candidate."""
    with chat_registry(tmp_path / "state" / "registry.db", env="prod") as reg:
        yield reg


@pytest.fixture
def run(cli_home: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Run:
    """The CLI in conftest's ``cli_home``, where llmship.yaml requires gates; env prod."""
    (cli_home / "llmship.yaml").write_text(yaml.safe_dump(REQUIRE))
    monkeypatch.setenv("LLMSHIP_ENV", "prod")
    return cli_runner()


def gate(registry: Registry, kind: str, passed: bool, ref: str = "chat@1.1.0") -> GateRun:
    return registry.record_gate_run(
        kind,
        ref,
        env="prod",
        passed=passed,
        summary={"verdict": "pass" if passed else "fail"},
        report={},
        actor="ci",
    )


def production(registry: Registry, env: str = "prod") -> str | None:
    record = registry.get_alias(env, "production")
    return record.ref if record is not None else None


def test_alias_set_is_refused_without_gate_runs(run: Run, registry: Registry) -> None:
    # Given no gate run of chat@1.1.0, when production moves to it
    out = run("alias", "set", "production", "chat@1.1.0", "-r", "ship", code=2).output
    # then it is refused, naming both gates and how to run them
    assert "eval: no run recorded" in out and "loadtest: no run recorded" in out
    assert "llmship eval" in out and "llmship loadtest" in out and "--force" in out
    assert production(registry) == "chat@1.0.0"
    # other aliases, and environments that require nothing, are not guarded
    run("alias", "set", "canary", "chat@1.1.0", "-r", "try")
    run("alias", "set", "production", "chat@1.1.0", "-r", "dev", "--env", "dev")
    assert production(registry, "dev") == "chat@1.1.0"


def test_alias_set_with_passing_gates(run: Run, registry: Registry) -> None:
    gate(registry, "eval", True)
    out = run("alias", "set", "production", "chat@1.1.0", "-r", "ship", code=2).output
    assert "loadtest: no run recorded" in out and "eval: " not in out
    gate(registry, "loadtest", True)
    run("alias", "set", "production", "chat@1.1.0", "-r", "ship")
    assert production(registry) == "chat@1.1.0"
    assert registry.alias_history("prod", "production")[-1].reason == "ship"
    assert registry.events(kind="gate.forced") == []


def test_a_failing_latest_run_refuses(run: Run, registry: Registry) -> None:
    gate(registry, "eval", True)
    gate(registry, "loadtest", True)
    failed = gate(registry, "eval", False)  # the newest eval run decides
    out = run("alias", "set", "production", "chat@1.1.0", "-r", "ship", code=2).output
    assert f"eval: run {failed.id} failed" in out
    assert production(registry) == "chat@1.0.0"


def test_staging_requires_only_eval(run: Run, registry: Registry) -> None:
    run("alias", "set", "production", "chat@1.0.0", "-r", "x", "--env", "staging", code=2)
    gate(registry, "eval", True, ref="chat@1.0.0")
    run("alias", "set", "production", "chat@1.0.0", "-r", "x", "--env", "staging")
    assert production(registry, "staging") == "chat@1.0.0"


def test_force_needs_a_reason_and_is_recorded(run: Run, registry: Registry) -> None:
    gate(registry, "eval", False)
    run("alias", "set", "production", "chat@1.1.0", "-r", " ", "--force", code=2)
    run("alias", "set", "production", "chat@1.1.0", "-r", "CVE fix", "--force")
    assert production(registry) == "chat@1.1.0"
    move = registry.alias_history("prod", "production")[-1]
    assert (move.reason, move.actor) == ("[forced] CVE fix", "tester")
    [event] = registry.events(kind="gate.forced")
    assert event.subject == "chat@1.1.0" and event.actor == "tester"
    assert event.data["missing"] == ["eval", "loadtest"]
    assert event.data["reason"] == "CVE fix" and event.data["env"] == "prod"


def test_an_alias_as_target_is_checked_as_its_release(run: Run, registry: Registry) -> None:
    registry.set_alias("prod", "staging", "chat@1.1.0", actor="ci", reason="stage")
    out = run("alias", "set", "production", "staging", "-r", "ship", code=2).output
    assert "chat@1.1.0 cannot become production in prod" in out


def test_without_configuration_nothing_is_required(
    run: Run, registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "llmship.yaml").unlink()
    run("alias", "set", "production", "chat@1.1.0", "-r", "ship")
    assert production(registry) == "chat@1.1.0"


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "canary.yaml"
    path.write_text(
        yaml.safe_dump({"name": "guarded", "strategy": {"canary": {"steps": [{"setWeight": 20}]}}})
    )
    return path


def test_rollout_start_refuses_at_once(run: Run, registry: Registry, spec_file: Path) -> None:
    gate(registry, "eval", True)
    out = run("rollout", "start", str(spec_file), "-c", "chat@1.1.0", "-r", "go", code=2).output
    assert "loadtest: no run recorded" in out and "llmship loadtest" in out
    assert registry.active_rollout("prod") is None
    gate(registry, "loadtest", True)
    run("rollout", "start", str(spec_file), "-c", "chat@1.1.0", "-r", "go")
    assert registry.active_rollout("prod") is not None


def test_rollout_start_forced(run: Run, registry: Registry, spec_file: Path) -> None:
    run("rollout", "start", str(spec_file), "-c", "chat@1.1.0", "--force", code=2)  # no reason
    run("rollout", "start", str(spec_file), "-c", "chat@1.1.0", "--force", "-r", "incident")
    record = registry.active_rollout("prod")
    assert record is not None and record.candidate == "chat@1.1.0"
    [event] = registry.events(kind="gate.forced")
    assert event.data["reason"] == "incident"


def test_traffic_promote_preview(run: Run, registry: Registry) -> None:
    run("traffic", "set", "--preview", "chat@1.1.0", "-r", "blue-green")
    out = run("traffic", "set", "--promote-preview", "-r", "switch", code=2).output
    assert "chat@1.1.0 cannot become production in prod" in out
    assert production(registry) == "chat@1.0.0"
    run("traffic", "set", "--promote-preview", "-r", "switch", "--force")
    assert production(registry) == "chat@1.1.0"
    assert registry.alias_history("prod", "production")[-1].reason == "[forced] switch"


def test_admin_promote_preview(
    run: Run, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmship.gateway.app import create_app
    from llmship.settings import load_settings

    monkeypatch.setenv("LLMSHIP_ADMIN_TOKEN", "secret")
    run("traffic", "set", "--preview", "chat@1.1.0", "-r", "blue-green")
    headers = {"Authorization": "Bearer secret", "X-Llmship-Actor": "ops"}
    with TestClient(create_app(registry, load_settings())) as client:
        url = "/api/v1/traffic/promote-preview"
        refused = client.post(url, json={"reason": "switch"}, headers=headers)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "gates_missing" and "loadtest" in error["message"]
        forced = client.post(url, json={"reason": "switch", "force": True}, headers=headers)
        assert forced.status_code == 200, forced.text
        assert forced.json()["stable"] == "chat@1.1.0"
    assert registry.alias_history("prod", "production")[-1].reason == "[forced] switch"
    assert "ops" in registry.events(kind="gate.forced")[0].actor  # the token, then ops


def test_traffic_set_canary_100_and_a_flag_through_the_command_line(
    run: Run, registry: Registry
) -> None:
    run("traffic", "set", "--canary", "chat@1.1.0", "--weight", "50", "-r", "half")
    out = run("traffic", "set", "--weight", "100", "-r", "all", code=2).output
    assert "chat@1.1.0 cannot get 100% of the traffic in prod" in out and "--force" in out
    assert registry.get_traffic("prod").canary_weight == 50
    run("traffic", "set", "--weight", "100", "--force", code=2)  # forcing needs a reason
    run("traffic", "set", "--weight", "100", "-r", "hotfix", "--force")
    assert registry.get_traffic("prod").canary_weight == 100
    run("traffic", "set", "--reset", "-r", "back")  # a flag alone now
    out = run(
        "flags", "set", "everyone", "--on", "--percent", "100", "--release", "chat@1.1.0",
        "-r", "x", code=2,
    ).output  # fmt: skip
    assert "cannot get 100% of the traffic" in out
    run(
        "flags", "set", "everyone", "--on", "--percent", "100", "--release", "chat@1.1.0",
        "-r", "dark launch", "--force",
    )  # fmt: skip
    reasons = [e.data["reason"] for e in registry.events(kind="gate.forced")]
    assert reasons == ["dark launch", "hotfix"]
