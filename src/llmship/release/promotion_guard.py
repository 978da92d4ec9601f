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

:func:`missing_gates` is the pure decision; :func:`check_promotion` applies it for
``llmship alias set``, ``llmship rollout start``, ``llmship traffic set
--promote-preview``, the admin API's promote-preview and ``llmship promote``. A
rollout is checked when it starts; the controller's promotion is not checked again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
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
    "check_promotion",
    "missing_gates",
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
    if path is None and not (os.environ.get(CONFIG_ENV) or Path(DEFAULT_CONFIG).is_file()):
        return ()  # no configuration file: nothing required
    environments = load_environments(path)
    if env in environments:
        return environments.get(env).require
    return load_requirements(path).get(env, ())  # an environment only gates: names


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
    missing = missing_gates(required, latest)
    if not missing:
        return reason
    problems = "; ".join(_problem(kind, latest.get(kind)) for kind in missing)
    if not force:
        runs = " and ".join(HOW_TO_RUN.get(k, f"the {k} gate").format(ref=ref) for k in missing)
        raise GateError(
            f"{ref} cannot become production in {env}: llmship.yaml requires the "
            f"{', '.join(required)} gate(s) to pass ({problems}); run {runs}, "
            "or override with --force --reason TEXT (recorded)",
            param="ref",
        )
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
    return reason if reason.startswith(FORCED_PREFIX) else FORCED_PREFIX + reason


def _problem(kind: str, run: GateRun | None) -> str:
    if run is None:
        return f"{kind}: no run recorded"
    return f"{kind}: run {run.id} failed"
