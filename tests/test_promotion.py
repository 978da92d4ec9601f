"""Promotion between environments (``llmship.pipeline.promotion``) over a real SQLite
registry: the checks (production in the source, the target's gates, a declared
environment), approvals (requested, approved once, rejected, no self-approval,
``--yes``), and what is carried out (the production alias, or the target's rollout)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from _registry import chat_registry, make_spec, register_chat, run_threads
from llmship.environments import Environment, Environments, load_environments
from llmship.errors import (
    ConflictError,
    GateError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    SpecError,
)
from llmship.pipeline.promotion import (
    YES_REASON,
    approve,
    list_approvals,
    promote,
    reject,
)
from llmship.registry import Registry, traffic_ops
from llmship.registry.traffic_ops import Changes
from llmship.release.promotion_guard import required_gates
from llmship.rollout import load_rollout
from llmship.rollout import ops as rollout_ops

NEW = "chat@1.1.0"
OLD = "chat@1.0.0"


def environments(**prod: object) -> Environments:
    """dev, staging (requires eval), prod (approval, requires eval and loadtest; ``prod``
    overrides its rules)."""
    rules: dict[str, object] = {"require": ("eval", "loadtest"), "approval": True}
    rules.update(prod)
    return Environments(
        (
            Environment("dev"),
            Environment("staging", require=("eval",)),
            Environment("prod", reason="required", **rules),  # type: ignore[arg-type]
        ),
        source="test",
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """chat@1.0.0 production in dev, staging and prod; chat@1.1.0 production in staging
    (promoted there), with passing eval and load-test runs."""
    with chat_registry(tmp_path / "registry.db", env="dev") as reg:
        for env in ("staging", "prod"):
            reg.set_alias(env, "production", OLD, actor="ci", reason="launch")
        reg.set_alias("staging", "production", NEW, actor="ci", reason="staged")
        passed(reg, "eval")
        passed(reg, "loadtest")
        yield reg


def passed(registry: Registry, kind: str, ok: bool = True, ref: str = NEW) -> None:
    registry.record_gate_run(kind, ref, env="staging", passed=ok, summary={}, report={}, actor="ci")


def production(registry: Registry, env: str = "prod") -> str | None:
    record = registry.get_alias(env, "production")
    return record.ref if record is not None else None


def kinds(registry: Registry, prefix: str = "approval.") -> list[str]:
    """The kinds of the events starting with ``prefix``, oldest first."""
    return [e.kind for e in reversed(registry.events()) if e.kind.startswith(prefix)]


# -- approval ----------------------------------------------------------------------


def test_a_promotion_into_prod_waits_for_another_persons_approval(registry: Registry) -> None:
    envs = environments()
    # When alice asks to promote chat@1.1.0 from staging into prod
    asked = promote(registry, envs, NEW, to="prod", actor="alice", reason="better answers")
    # Then it waits, nothing moved, and the message says how to approve it
    assert (asked.state, asked.source_env, asked.approval_id) == ("pending", "staging", 1)
    assert "waiting for approval 1" in asked.message and "llmship approve 1" in asked.message
    assert production(registry) == OLD
    [request] = list_approvals(registry, state="pending")
    assert (request.requested_by, request.request_reason, request.ref) == (
        "alice",
        "better answers",
        NEW,
    )
    # And asking again waits on the same request
    again = promote(registry, envs, NEW, to="prod", actor="alice")
    assert again.approval_id == 1 and "already asked" in again.message
    # When bob approves it, production moves, and the history says who approved
    done = approve(registry, envs, 1, actor="bob", reason="reviewed the reports")
    assert (done.state, done.approval_id, done.rollout_id) == ("moved", 1, None)
    assert production(registry) == NEW
    move = registry.alias_history("prod", "production")[-1]
    assert move.actor == "bob"
    assert move.reason == "promoted from staging: approval 1 by bob: reviewed the reports"
    decided = registry.get_approval(1)
    assert (decided.state, decided.decided_by, decided.decision_reason) == (
        "approved",
        "bob",
        "reviewed the reports",
    )
    assert decided.decided_at is not None
    assert kinds(registry) == ["approval.requested", "approval.approved"]


def test_the_requester_cannot_approve_unless_configured(registry: Registry) -> None:
    promote(registry, environments(), NEW, to="prod", actor="alice")
    with pytest.raises(PermissionDeniedError, match="alice asked for this promotion"):
        approve(registry, environments(), 1, actor="alice")
    assert registry.get_approval(1).pending and production(registry) == OLD
    done = approve(registry, environments(self_approval=True), 1, actor="alice")
    assert done.state == "moved" and production(registry) == NEW


def test_yes_approves_at_once_where_allowed(registry: Registry) -> None:
    # Where --yes is not allowed, nothing is recorded
    with pytest.raises(InvalidRequestError, match="--yes is not allowed for prod"):
        promote(registry, environments(), NEW, to="prod", actor="ci", yes=True)
    assert list_approvals(registry) == [] and production(registry) == OLD
    # Where it is, the approval is recorded as given by the one who asked, with "--yes"
    done = promote(registry, environments(allow_yes=True), NEW, to="prod", actor="ci", yes=True)
    assert done.state == "moved" and production(registry) == NEW
    [record] = list_approvals(registry)
    assert (record.state, record.requested_by, record.decided_by) == ("approved", "ci", "ci")
    assert record.decision_reason == YES_REASON


def test_an_unknown_or_decided_approval_is_refused(registry: Registry) -> None:
    envs = environments()
    with pytest.raises(NotFoundError, match="no approval 9"):
        approve(registry, envs, 9, actor="bob")
    with pytest.raises(NotFoundError, match="no approval 9"):
        reject(registry, 9, actor="bob", reason="no")
    promote(registry, envs, NEW, to="prod", actor="alice")
    with pytest.raises(InvalidRequestError, match="--reason"):
        reject(registry, 1, actor="bob", reason=" ")
    rejected = reject(registry, 1, actor="bob", reason="eval too close to call")
    assert (rejected.state, rejected.decided_by) == ("rejected", "bob")
    with pytest.raises(ConflictError, match="already rejected by bob"):
        approve(registry, envs, 1, actor="carol")
    with pytest.raises(ConflictError, match="already rejected by bob"):
        reject(registry, 1, actor="carol", reason="also no")
    assert production(registry) == OLD
    assert kinds(registry) == ["approval.requested", "approval.rejected"]
    # A new request may follow a rejected one
    assert promote(registry, envs, NEW, to="prod", actor="alice").approval_id == 2


def test_two_approvers_at_once_carry_it_out_once(db_url: str) -> None:
    # Given a pending promotion, in SQLite and in PostgreSQL
    first = Registry.open(db_url)
    registries = [Registry.open(db_url) for _ in range(4)]
    try:
        register_chat(first, env="prod")
        first.set_alias("staging", "production", NEW, actor="ci", reason="staged")
        envs = environments(require=())
        promote(first, envs, NEW, to="prod", actor="alice")
        outcomes: list[str] = []

        def decide(index: int) -> None:
            try:
                approve(registries[index], envs, 1, actor=f"approver{index}")
                outcomes.append("approved")
            except ConflictError as exc:
                outcomes.append(exc.message)

        # When four people approve it at the same moment
        run_threads(4, decide)
        # Then one of them carries it out, and the others are told it was decided
        assert outcomes.count("approved") == 1, outcomes
        assert all("already approved" in o for o in outcomes if o != "approved"), outcomes
        assert len(first.alias_history("prod", "production")) == 2  # launch, then one move
        assert kinds(first) == ["approval.requested", "approval.approved"]
    finally:
        for reg in [first, *registries]:
            reg.close()


# -- what is checked -----------------------------------------------------------------


def test_a_release_that_is_not_production_in_the_source_is_refused(registry: Registry) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        promote(registry, environments(), OLD, to="prod", actor="alice")
    assert "chat@1.0.0 is not the production release of staging (it is chat@1.1.0)" in str(
        caught.value.message
    )
    with pytest.raises(InvalidRequestError, match="not the production release of dev"):
        promote(registry, environments(), NEW, to="staging", actor="alice")
    assert list_approvals(registry) == [] and production(registry) == OLD


def test_missing_gates_are_refused_and_checked_again_on_approval(registry: Registry) -> None:
    passed(registry, "loadtest", ok=False)
    with pytest.raises(GateError, match="loadtest: run 3 failed"):
        promote(registry, environments(), NEW, to="prod", actor="alice")
    assert list_approvals(registry) == []
    passed(registry, "loadtest")
    promote(registry, environments(), NEW, to="prod", actor="alice")
    # the eval fails after the request: the approval is refused and stays pending
    passed(registry, "eval", ok=False)
    with pytest.raises(GateError, match="eval: run 5 failed"):
        approve(registry, environments(), 1, actor="bob")
    assert registry.get_approval(1).pending and production(registry) == OLD
    assert kinds(registry) == ["approval.requested"]


def test_unknown_environments_and_nowhere_to_come_from(registry: Registry) -> None:
    envs = environments()
    with pytest.raises(SpecError, match="no environment 'qa' in test; declared: dev, staging"):
        promote(registry, envs, NEW, to="qa", actor="alice")
    with pytest.raises(SpecError, match="no environment 'qa'"):
        promote(registry, envs, NEW, to="prod", source="qa", actor="alice")
    with pytest.raises(InvalidRequestError, match="dev is the first environment"):
        promote(registry, envs, NEW, to="dev", actor="alice")
    with pytest.raises(InvalidRequestError, match="from one environment into another"):
        promote(registry, envs, NEW, to="prod", source="prod", actor="alice")
    with pytest.raises(NotFoundError):
        promote(registry, envs, "chat@9.9.9", to="prod", actor="alice")
    assert list_approvals(registry) == [] and production(registry) == OLD


def test_from_another_environment_and_already_there(registry: Registry) -> None:
    envs = environments(approval=False, require=())
    registry.set_alias("dev", "production", NEW, actor="ci", reason="dev first")
    done = promote(registry, envs, NEW, to="prod", source="dev", actor="alice")
    assert (done.state, done.source_env) == ("moved", "dev") and production(registry) == NEW
    with pytest.raises(ConflictError, match="already the production release of prod"):
        promote(registry, envs, NEW, to="prod", actor="alice")


def test_an_alias_of_the_source_names_its_release(registry: Registry) -> None:
    envs = environments(approval=False, require=())
    done = promote(registry, envs, "production", to="prod", actor="alice")
    assert done.ref == NEW and production(registry) == NEW


# -- rollouts ------------------------------------------------------------------------


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary.yaml"
    spec = {"name": "canary", "strategy": {"canary": {"steps": [{"setWeight": 20}]}}}
    path.write_text(yaml.safe_dump(spec))
    return path


def test_an_approved_promotion_starts_the_targets_rollout(registry: Registry, canary: Path) -> None:
    envs = environments(rollout=canary)
    promote(registry, envs, NEW, to="prod", actor="alice")
    done = approve(registry, envs, 1, actor="bob")
    # Then the rollout runs the candidate from the production release; production waits
    assert done.state == "started" and done.rollout_id is not None
    assert "llmship rollout status --env prod" in done.message
    rollout = registry.active_rollout("prod")
    assert rollout is not None and rollout.id == done.rollout_id
    assert (rollout.candidate, rollout.stable, rollout.name) == (NEW, OLD, "canary")
    assert production(registry) == OLD


def test_a_rollout_running_in_the_target_refuses_the_approval(
    registry: Registry, canary: Path
) -> None:
    envs = environments(rollout=canary, require=())
    registry.register(make_spec(version="1.2.0"), actor="ci")
    promote(registry, envs, NEW, to="prod", actor="alice")
    rollout_ops.start(registry, load_rollout(canary), "chat@1.2.0", env="prod", actor="ops")
    with pytest.raises(ConflictError, match="one rollout runs at a time"):
        approve(registry, envs, 1, actor="bob")
    assert registry.get_approval(1).pending


def test_an_approval_that_cannot_be_carried_out_waits_again(
    registry: Registry, canary: Path
) -> None:
    envs = environments(rollout=canary)
    promote(registry, envs, NEW, to="prod", actor="alice")
    # Given a canary set by hand in prod, which a rollout refuses to start over
    traffic_ops.change(
        registry, "prod", Changes(shadow=NEW, percent=5.0), actor="ops", reason="by hand"
    )
    with pytest.raises(ConflictError, match="set by hand"):
        approve(registry, envs, 1, actor="bob")
    # Then the approval is pending again, and the events say why
    record = registry.get_approval(1)
    assert record.pending and record.decided_by is None
    assert kinds(registry) == ["approval.requested", "approval.approved", "approval.reopened"]
    assert registry.active_rollout("prod") is None and production(registry) == OLD


def test_the_first_promotion_into_an_empty_environment_moves_production(
    tmp_path: Path, canary: Path
) -> None:
    envs = environments(rollout=canary, approval=False, require=())
    with chat_registry(tmp_path / "registry.db") as registry:
        registry.set_alias("staging", "production", NEW, actor="ci", reason="staged")
        done = promote(registry, envs, NEW, to="prod", actor="alice")
    assert done.state == "moved" and "no production release to roll out from" in done.message


# -- configuration -------------------------------------------------------------------


def test_the_default_environments_and_gates_require(tmp_path: Path) -> None:
    # Given only the older gates: require: section
    config = tmp_path / "llmship.yaml"
    config.write_text(yaml.safe_dump({"gates": {"require": {"prod": ["eval"]}}}))
    envs = load_environments(config)
    with chat_registry(tmp_path / "registry.db", env="staging") as registry:
        register_chat(registry, ("1.0.0",), env="prod")
        registry.set_alias("staging", "production", NEW, actor="ci", reason="staged")
        # Then prod requires the eval gate, and waits for an approval (its default)
        with pytest.raises(GateError, match="eval: no run recorded"):
            promote(registry, envs, NEW, to="prod", actor="alice")
        passed(registry, "eval")
        assert promote(registry, envs, NEW, to="prod", actor="alice").state == "pending"
        # And staging, from dev, requires nothing
        registry.set_alias("dev", "production", OLD, actor="ci", reason="dev")
        assert promote(registry, envs, OLD, to="staging", actor="alice").state == "moved"


def test_list_approvals_filters(registry: Registry) -> None:
    envs = environments(require=())
    registry.set_alias("dev", "production", NEW, actor="ci", reason="dev")
    promote(registry, envs, NEW, to="prod", actor="alice")
    envs_staging = Environments(
        (Environment("dev"), Environment("staging", approval=True), Environment("prod")),
    )
    registry.set_alias("staging", "production", OLD, actor="ci", reason="back")
    promote(registry, envs_staging, NEW, to="staging", actor="alice")
    reject(registry, 2, actor="bob", reason="not now")
    assert [a.id for a in list_approvals(registry)] == [2, 1]
    assert [a.id for a in list_approvals(registry, env="prod")] == [1]
    assert [a.id for a in list_approvals(registry, state="rejected")] == [2]
    with pytest.raises(InvalidRequestError, match="use one of pending, approved, rejected"):
        list_approvals(registry, state="done")


def test_the_guard_reads_the_environments_require(tmp_path: Path) -> None:
    config = tmp_path / "llmship.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "environments": {"staging": {}, "prod": {"require": ["loadtest"]}},
                "gates": {"require": {"staging": ["eval"], "qa": ["eval", "loadtest"]}},
            }
        )
    )
    assert required_gates("prod", config) == ("loadtest",)  # its own require: wins
    assert required_gates("staging", config) == ("eval",)  # none of its own: gates: require:
    assert required_gates("qa", config) == ("eval", "loadtest")  # not declared, but required
    assert required_gates("dev", config) == ()
