"""The ``environments:`` section of ``llmship.yaml``: dev, staging, prod and their rules.

Each environment has its gateway port, the gates a release must have passed to
become its production release, whether a promotion into it waits for a person's
approval, whether traffic and alias changes must give a reason, the rollout spec a
promotion into it runs, and what an alert labelled ``action=rollback`` does after a
promotion. The order of the mapping is the order of promotion: ``llmship promote
--to prod`` promotes from the environment listed before ``prod``::

    environments:
      dev:     {gateway_port: 8080}
      staging: {gateway_port: 8081, require: [eval], guard_above: 50}
      prod:
        gateway_port: 8082
        require: [eval, loadtest]
        approval: true
        rollout: rollouts/canary.yaml
        on_alert: rollback

Without the section, llmship has :data:`DEFAULT_ENVIRONMENTS`. An environment that
is not declared (``--env test``) still works for everything but promotion, with the
defaults of :class:`Environment`. Light on purpose, like :mod:`llmship.gates_config`:
it is read on every traffic and alias change.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmship.errors import SpecError
from llmship.gates_config import GATE_KINDS, requirements_in
from llmship.settings import ENV_PATTERN, ENV_RULE, read_config

__all__ = [
    "DEFAULT_ENVIRONMENTS",
    "Environment",
    "Environments",
    "load_environments",
]

log = logging.getLogger(__name__)

PRODUCTION_NAMES = frozenset({"prod", "production"})
"""Environment names whose changes need a reason unless configured otherwise."""

Gate = Literal["eval", "loadtest"]


class _EnvironmentModel(BaseModel):
    """One entry of ``environments:`` as written (every key optional)."""

    model_config = ConfigDict(extra="forbid")

    gateway_port: int | None = Field(None, ge=0, le=65535)
    require: list[Gate] | None = None
    guard_above: float | None = Field(None, ge=0, lt=100)
    approval: bool = False
    self_approval: bool = False
    allow_yes: bool = False
    reason: Literal["required", "optional"] | None = None
    rollout: str | None = None
    on_alert: Literal["notify", "rollback"] = "notify"


@dataclass(frozen=True)
class Environment:
    """One environment's rules."""

    name: str
    gateway_port: int | None = None
    """Port of its gateway (``llmship up --env NAME``); None: the ``gateway_port`` setting."""
    require: tuple[str, ...] = ()
    """Gates (``eval``, ``loadtest``) a release must have passed to become production here."""
    guard_above: float | None = None
    """Also guard any traffic share above this percent (a canary, an experiment arm, a
    routing flag); None: only production (the alias, or all of the traffic)."""
    approval: bool = False
    """A promotion into it waits for ``llmship approve``."""
    self_approval: bool = False
    """The person who asked for a promotion may approve it."""
    allow_yes: bool = False
    """``llmship promote --yes`` may approve in the same command (scripted runs)."""
    reason: Literal["required", "optional"] = "optional"
    """Whether ``llmship traffic set`` and ``llmship alias set`` need ``--reason``."""
    rollout: Path | None = None
    """The rollout spec a promotion into it runs; None: the alias moves at once."""
    on_alert: Literal["notify", "rollback"] = "notify"
    """What an ``action=rollback`` alert does when no rollout is running: ``rollback``
    moves production back to the previous release, ``notify`` only records it."""

    @property
    def needs_reason(self) -> bool:
        """Traffic and alias changes here must say why."""
        return self.reason == "required"


def _default(name: str) -> Environment:
    """An undeclared environment: a reason is needed only in ``prod``/``production``."""
    return Environment(name, reason="required" if name in PRODUCTION_NAMES else "optional")


DEFAULT_ENVIRONMENTS = (
    Environment("dev", gateway_port=8080),
    Environment("staging", gateway_port=8081),
    Environment("prod", gateway_port=8082, approval=True, reason="required"),
)
"""The environments when ``llmship.yaml`` has no ``environments:`` section."""


@dataclass(frozen=True)
class Environments:
    """The declared environments, in promotion order."""

    items: tuple[Environment, ...]
    source: str = "defaults"
    """Where they were read: the configuration file, or ``defaults``."""
    _by_name: dict[str, Environment] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {e.name: e for e in self.items})

    def __iter__(self) -> Iterator[Environment]:
        return iter(self.items)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        """The names, in promotion order."""
        return tuple(e.name for e in self.items)

    def get(self, name: str) -> Environment:
        """The rules of ``name``: declared, else the defaults of an undeclared one."""
        return self._by_name.get(name) or _default(name)

    def declared(self, name: str) -> Environment:
        """The declared environment ``name``; SpecError lists the declared ones."""
        found = self._by_name.get(name)
        if found is None:
            raise SpecError(
                f"no environment {name!r} in {self.source}; declared: {', '.join(self.names)}"
            )
        return found

    def before(self, name: str) -> Environment | None:
        """The environment a promotion into ``name`` comes from (None for the first)."""
        index = self.names.index(self.declared(name).name)
        return self.items[index - 1] if index > 0 else None


def load_environments(path: Path | None = None) -> Environments:
    """``environments:`` of ``llmship.yaml`` (else :data:`DEFAULT_ENVIRONMENTS`).

    ``gates: require:`` (the older place of the required gates) still applies to an
    environment that sets no ``require:`` of its own. SpecError names the file and
    the entry that is wrong.
    """
    file, data = read_config(path)
    legacy = requirements_in(file, data)
    section = data.get("environments") if isinstance(data, dict) else None
    if section is None:
        items = tuple(_with_legacy(e, legacy) for e in DEFAULT_ENVIRONMENTS)
        undeclared = [env for env in legacy if env not in {e.name for e in items}]
        items += tuple(_with_legacy(_default(env), legacy) for env in undeclared)
        return Environments(items, source="defaults")
    if not isinstance(section, dict) or not section:
        raise SpecError(
            f"{file}: environments: must be a mapping of name: settings, e.g. "
            "{dev: {gateway_port: 8080}, prod: {approval: true}}"
        )
    return Environments(
        tuple(_parse(file, str(name), entry, legacy) for name, entry in section.items()),
        source=str(file),
    )


def _parse(file: Path, name: str, entry: Any, legacy: Mapping[str, tuple[str, ...]]) -> Environment:
    where = f"{file}: environments.{name}"
    if not re.match(ENV_PATTERN, name):
        raise SpecError(f"{where}: not a valid environment name; use {ENV_RULE}")
    try:
        model = _EnvironmentModel.model_validate(entry or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        detail = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            detail = f"unknown key; use one of {', '.join(_EnvironmentModel.model_fields)}"
        elif error["type"] == "literal_error" and key.startswith("require"):
            detail = f"unknown gate {error.get('input')!r}; use {' or '.join(GATE_KINDS)}"
        raise SpecError(f"{where}.{key}: {detail}" if key else f"{where}: {detail}") from exc
    rollout = None
    if model.rollout:
        rollout = Path(model.rollout)
        if not rollout.is_absolute():
            rollout = file.parent / rollout
    require = tuple(dict.fromkeys(model.require)) if model.require is not None else None
    env = Environment(
        name,
        gateway_port=model.gateway_port,
        require=require or (),
        guard_above=model.guard_above,
        approval=model.approval,
        self_approval=model.self_approval,
        allow_yes=model.allow_yes,
        reason=model.reason or _default(name).reason,
        rollout=rollout,
        on_alert=model.on_alert,
    )
    return env if require is not None else _with_legacy(env, legacy)


def _with_legacy(env: Environment, legacy: Mapping[str, tuple[str, ...]]) -> Environment:
    """``env`` with the gates ``gates: require:`` gives it, when it names it."""
    if env.name not in legacy:
        return env
    return replace(env, require=legacy[env.name])
