"""Schemathesis against the OpenAPI documents of the gateway and of a model server
(issue 15, point 7): cases generated from each operation's schema, a bounded number per
operation, sent with the admin token; no answer is a 5xx, every answer has a status the
document lists and a body its schema describes.

The two run in this process (``_fuzz_stack``): the gateway over a real SQLite registry,
the model server over a fake backend. ``FUZZ_EXAMPLES`` sets the examples per operation
(default 20).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from _fuzz_stack import ADMIN, FuzzStack, fuzz_stack

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(600)]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every run: CI fails on a change, not on luck
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzStack]:
    with fuzz_stack(Path(tmp_path_factory.mktemp("fuzz"))) as running:
        yield running


@dataclass
class Tally:
    """What one run sent and got: cases and statuses per operation."""

    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        cases = sum(sum(c.values()) for c in self.statuses.values())
        errors = sum(n for c in self.statuses.values() for s, n in c.items() if s >= 500)
        refused = [op for op, c in self.statuses.items() if c and all(400 <= s < 500 for s in c)]
        return (
            f"{len(self.statuses)} operations, {cases} cases, {errors} 5xx, "
            f"{len(self.failures)} operations failing a check; every case refused (4xx): "
            f"{', '.join(refused) or 'none'}"
        )


def _run(
    operation: schemathesis.APIOperation, headers: dict[str, str], statuses: Counter[int]
) -> None:
    @FUZZ
    @given(case=operation.as_strategy())
    def one(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    one()


def fuzz(url: str, headers: dict[str, str]) -> Tally:
    """Every operation of the document at ``url``, ``EXAMPLES`` generated cases each."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    tally = Tally()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        statuses = tally.statuses.setdefault(label, Counter())
        try:
            _run(operation, headers, statuses)
        except Exception as exc:  # a failed check, with the case that shows it
            tally.failures.append(f"{label}: {exc}")
    return tally


def test_the_gateway_answers_every_generated_request(stack: FuzzStack) -> None:
    tally = fuzz(stack.gateway_url, ADMIN)
    print(f"gateway: {tally.summary()}")
    assert not tally.failures, "\n\n".join(tally.failures)


def test_the_model_server_answers_every_generated_request(stack: FuzzStack) -> None:
    tally = fuzz(stack.server_url, {})
    print(f"model server: {tally.summary()}")
    assert not tally.failures, "\n\n".join(tally.failures)
