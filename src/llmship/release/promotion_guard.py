"""The promotion guard: a release takes an environment's ``production`` alias only
with passing gate runs, when ``llmship.yaml`` requires them for that environment::

    environments:
      staging: {require: [eval]}
      prod: {require: [eval, loadtest]}

(``gates: require: {prod: [eval, loadtest]}``, the older place, still applies to an
environment that sets no ``require:``; see :mod:`llmship.environments`.)

The newest run of each required kind (``Registry.latest_gate_runs``) must have
passed; a missing or failed one refuses the promotion (:class:`GateError`, 409)
unless the person forces it with a reason, which is recorded as an event
``gate.forced`` and in the alias history as ``[forced] reason``. Without such
configuration nothing is required.

:func:`missing_gates` is the pure decision and :class:`PromotionGuard` the rules of
each environment (``require:`` and ``guard_above:``). The registry enforces them in
its own writes (``registry/_guard.py``): every alias move of ``production``, every
traffic policy or flag change that gives a release all of an environment's traffic
(or more than ``guard_above`` percent of it), every rollout it records, whoever
calls. :func:`check_promotion` is the same check ahead of time, for a friendly early
error (``llmship promote`` before it records an approval request).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llmship.environments import load_environments
from llmship.errors import GateError, InvalidRequestError
from llmship.gates_config import load_requirements
from llmship.settings import CONFIG_ENV, DEFAULT_CONFIG

if TYPE_CHECKING:
    from llmship.registry.records import Event, GateRun

__all__ = [
    "FORCED_PREFIX",
    "GateRecords",
    "GuardRule",
    "PromotionGuard",
    "check_promotion",
    "forced_reason",
    "gate_error",
    "missing_gates",
    "refusal",
    "required_gates",
]

log = logging.getLogger(__name__)

FORCED_PREFIX = "[forced] "
"""What a forced promotion's reason starts with in the alias history."""

HOW_TO_RUN = {
    "eval": "`llmship eval --dataset PATH --candidate {ref}`",
    "loadtest": "`llmship loadtest --release {ref} --duration 1m`",
}


class GateRecords(Protocol):
    """What the guard reads and writes in the registry (``Registry`` has both)."""

    def latest_gate_runs(self, ref: str) -> dict[str, GateRun]: ...

    def record_event(
        self,
        kind: str,
        subject: str,
        message: str,
        *,
        actor: str,
        data: dict[str, Any] | None = None,
    ) -> Event: ...


def missing_gates(required: Sequence[str], latest: Mapping[str, GateRun]) -> list[str]:
    """The required gates whose newest run is missing or failed, in ``required``'s order."""
    missing = []
    for kind in required:
        run = latest.get(kind)
        if (run is None or not run.passed) and kind not in missing:
            missing.append(kind)
    return missing


def required_gates(env: str, path: Path | None = None) -> tuple[str, ...]:
    """The gates ``llmship.yaml`` requires before ``env``'s production alias moves: the
    environment's ``require:`` (else ``gates: require:``)."""
    return PromotionGuard(path).rule(env).require


@dataclass(frozen=True)
class GuardRule:
    """What the guard asks of one environment."""

    require: tuple[str, ...] = ()
    """The gates whose newest run must have passed; empty: nothing is guarded."""
    above: float | None = None
    """Guard any traffic share above this percent; None: only production (the
    ``production`` alias, or a release given all of the traffic)."""

    def guards(self, share: float) -> bool:
        """Whether a release given ``share`` percent of the traffic needs the gates."""
        if not self.require:
            return False
        return share >= 100 if self.above is None else share > self.above


@dataclass(frozen=True)
class PromotionGuard:
    """The rules of every environment: fixed ones (``rules``, for a registry opened
    with them), else read from ``llmship.yaml`` (``path``, else ``LLMSHIP_CONFIG``,
    else the working directory's) on every check, as the traffic and alias commands
    read it. Without a configuration file nothing is guarded."""

    path: Path | None = None
    rules: Mapping[str, GuardRule] | None = None

    def rule(self, env: str) -> GuardRule:
        """The rule of ``env``: its ``require:`` (else ``gates: require:``) and
        ``guard_above:``."""
        if self.rules is not None:
            return self.rules.get(env, GuardRule())
        path = self.path
        if path is None and not (os.environ.get(CONFIG_ENV) or Path(DEFAULT_CONFIG).is_file()):
            return GuardRule()  # no configuration file: nothing required
        environments = load_environments(path)
        if env in environments:
            declared = environments.get(env)
            return GuardRule(declared.require, declared.guard_above)
        return GuardRule(load_requirements(path).get(env, ()))  # only gates: names it


def refusal(required: Sequence[str], latest: Mapping[str, GateRun]) -> tuple[list[str], str]:
    """The gates ``ref`` lacks (``missing_gates``) and what they are, e.g.
    ``eval: run 7 failed; loadtest: no run recorded``."""
    missing = missing_gates(required, latest)
    return missing, "; ".join(_problem(kind, latest.get(kind)) for kind in missing)


def gate_error(
    env: str, ref: str, required: Sequence[str], missing: Sequence[str], problems: str, what: str
) -> GateError:
    """The 409 refusing ``ref`` (to ``what``, e.g. ``become production``): the gates, why,
    how to run them, how to override."""
    runs = " and ".join(HOW_TO_RUN.get(k, f"the {k} gate").format(ref=ref) for k in missing)
    return GateError(
        f"{ref} cannot {what} in {env}: llmship.yaml requires the "
        f"{', '.join(required)} gate(s) to pass ({problems}); run {runs}, "
        "or override with --force --reason TEXT (recorded)",
        param="ref",
    )


def forced_reason(reason: str) -> str:
    """``reason`` as recorded for a forced change: ``[forced] reason``."""
    return reason if reason.startswith(FORCED_PREFIX) else FORCED_PREFIX + reason


def check_promotion(
    registry: GateRecords,
    env: str,
    ref: str,
    *,
    force: bool,
    reason: str,
    actor: str,
    required: Sequence[str] | None = None,
) -> str:
    """Check that the release ``ref`` (``NAME@VERSION``) may become ``env``'s production
    release; the reason to record with the move.

    ``required`` defaults to what ``llmship.yaml`` requires for ``env``
    (:func:`required_gates`). When a
    required gate's newest run is missing or failed: GateError saying which and
    how to run them, unless ``force`` (with a ``reason``), which records an event
    ``gate.forced`` and returns the reason prefixed with ``[forced]``.
    """
    if required is None:
        required = required_gates(env)
    if not required:
        return reason
    latest = registry.latest_gate_runs(ref)
    missing, problems = refusal(required, latest)
    if not missing:
        return reason
    if not force:
        raise gate_error(env, ref, required, missing, problems, "become production")
    if not reason.strip():
        raise InvalidRequestError(
            "--force needs --reason TEXT: why the release goes out without passing gates",
            param="reason",
        )
    registry.record_event(
        "gate.forced",
        ref,
        f"{ref} forced into production in {env} without passing gates ({problems}): {reason}",
        actor=actor,
        data={"env": env, "ref": ref, "missing": missing, "reason": reason, "actor": actor},
    )
    log.warning("gates %s of %s forced in %s by %s", ",".join(missing), ref, env, actor)
    return forced_reason(reason)


def _problem(kind: str, run: GateRun | None) -> str:
    if run is None:
        return f"{kind}: no run recorded"
    return f"{kind}: run {run.id} failed"
