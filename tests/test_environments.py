"""The environments: section of llmship.yaml: defaults, order, rules, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmship.environments import DEFAULT_ENVIRONMENTS, load_environments
from llmship.errors import SpecError


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llmship.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_without_a_section_there_are_dev_staging_and_prod(tmp_path: Path) -> None:
    envs = load_environments(_config(tmp_path, "env: dev\n"))
    assert envs.names == ("dev", "staging", "prod")
    assert envs.items == DEFAULT_ENVIRONMENTS
    prod = envs.declared("prod")
    assert prod.approval and prod.needs_reason and prod.gateway_port == 8082
    assert not envs.get("dev").needs_reason
    assert envs.before("prod") == envs.declared("staging")
    assert envs.before("dev") is None


def test_declared_environments_keep_their_order_and_rules(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "environments:\n"
        "  qa: {gateway_port: 9001, require: [eval]}\n"
        "  production:\n"
        "    gateway_port: 9002\n"
        "    require: [eval, loadtest, eval]\n"
        "    approval: true\n"
        "    allow_yes: true\n"
        "    rollout: rollouts/canary.yaml\n"
        "    on_alert: rollback\n",
    )
    envs = load_environments(path)
    assert envs.names == ("qa", "production")
    production = envs.declared("production")
    assert production.require == ("eval", "loadtest")
    assert production.rollout == tmp_path / "rollouts" / "canary.yaml"
    assert production.on_alert == "rollback" and production.allow_yes
    assert production.needs_reason  # required by default in a production environment
    assert not envs.declared("qa").needs_reason
    assert envs.before("production") == envs.declared("qa")


def test_gates_require_still_applies_where_an_environment_sets_none(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "gates: {require: {prod: [loadtest], staging: [eval]}}\n"
        "environments:\n  staging: {require: []}\n  prod: {}\n",
    )
    envs = load_environments(path)
    assert envs.declared("prod").require == ("loadtest",)
    assert envs.declared("staging").require == ()


def test_an_undeclared_environment_gets_the_defaults(tmp_path: Path) -> None:
    envs = load_environments(_config(tmp_path, "environments: {dev: {}}\n"))
    assert envs.get("test").reason == "optional"
    assert envs.get("prod").reason == "required"
    with pytest.raises(SpecError, match=r"no environment 'prod' .*declared: dev"):
        envs.declared("prod")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("environments: [dev]\n", "environments: must be a mapping"),
        ("environments: {PROD: {}}\n", "environments.PROD: not a valid environment name"),
        ("environments: {prod: {aproval: true}}\n", "environments.prod.aproval: unknown key"),
        ("environments: {prod: {require: [evals]}}\n", "unknown gate 'evals'"),
        ("environments: {prod: {on_alert: page}}\n", "environments.prod.on_alert"),
        ("environments: {prod: {gateway_port: 70000}}\n", "environments.prod.gateway_port"),
    ],
)
def test_a_bad_entry_names_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _config(tmp_path, text)
    with pytest.raises(SpecError, match=r"llmship\.yaml") as caught:
        load_environments(path)
    assert message in str(caught.value)
