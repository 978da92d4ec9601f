"""Verdicts with Argo Rollouts' semantics: measurement, metric and run phases (pure tables).

The cases follow Argo's own checklist: ``utils/evaluate/evaluate_test.go``
(``TestEvaluateResult*``) and ``analysis/analysis_test.go``
(``TestAssessMetricStatus*``, ``TestAssessRunStatus*``).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from llmship.analysis import (
    ERROR_RETRY_INTERVAL,
    Measurement,
    Metric,
    MetricTally,
    Phase,
    Verdict,
    assess_measurement,
    assess_metric,
    assess_metric_reason,
    assess_run,
    next_measurement_at,
    tally,
    verdict,
)

S, F, I, E = Phase.SUCCESSFUL, Phase.FAILED, Phase.INCONCLUSIVE, Phase.ERROR  # noqa: E741 (I for Inconclusive)
R, P = Phase.RUNNING, Phase.PENDING


def metric(**fields: Any) -> Metric:
    """A metric from YAML-style (camelCase) fields, with a builtin provider."""
    data = {"name": "m", "provider": {"builtin": {"metric": "error_rate"}}, **fields}
    return Metric.model_validate(data)


# -- one measurement ---------------------------------------------------------------

BOTH = {"successCondition": "result < 0.05", "failureCondition": "result > 0.10"}


@pytest.mark.parametrize(
    ("conditions", "value", "expected"),
    [
        # no conditions: Successful (the code, not the old docs' "Inconclusive")
        ({}, 0.5, S),
        ({}, None, S),
        # successCondition only: false is a failure
        ({"successCondition": "result < 0.05"}, 0.01, S),
        ({"successCondition": "result < 0.05"}, 0.07, F),
        ({"successCondition": "result < 0.05"}, math.nan, F),
        # failureCondition only: false is a success
        ({"failureCondition": "result > 0.10"}, 0.07, S),
        ({"failureCondition": "result > 0.10"}, 0.20, F),
        # both: the failure condition wins; neither true is Inconclusive
        (BOTH, 0.01, S),
        (BOTH, 0.20, F),
        (BOTH, 0.07, I),
        (BOTH, math.nan, I),
        ({"successCondition": "result > 0", "failureCondition": "result > 0"}, 1, F),
        # a condition that cannot be evaluated: Error (either one)
        ({"successCondition": "result[0] < 1"}, [], E),
        ({"failureCondition": "result[0] > 1"}, 0.5, E),
        ({"successCondition": "result < 1", "failureCondition": "result[0] > 1"}, 0.5, E),
        ({"successCondition": "result[0] < 1", "failureCondition": "result > 1"}, 0.5, E),
        ({"successCondition": "result"}, 1.0, E),  # not a boolean
    ],
)
def test_assess_measurement(conditions: dict[str, str], value: Any, expected: Phase) -> None:
    assert assess_measurement(value, metric(**conditions)) == expected


# -- one metric --------------------------------------------------------------------

COUNT3 = {"interval": "5s", "count": 3}


@pytest.mark.parametrize(
    ("fields", "phases", "expected"),
    [
        # nothing measured yet / in flight
        ({}, [], P),
        ({}, [S, R], R),
        # no count, no interval: one measurement decides
        ({}, [S], S),
        ({}, [F], F),
        ({}, [I], I),
        ({}, [E], R),  # an Error does not count: retried
        # count reached, failures within the limit: Successful
        (COUNT3, [S, S], R),
        (COUNT3, [S, S, S], S),
        ({**COUNT3, "failureLimit": 1}, [S, F, S], S),
        # failureLimit: Failed once failed > limit (default 0)
        (COUNT3, [S, F], F),
        ({**COUNT3, "failureLimit": 1}, [F, S], R),
        ({**COUNT3, "failureLimit": 1}, [F, F], F),
        ({**COUNT3, "failureLimit": 2}, [F, F, F], F),
        ({**COUNT3, "failureLimit": 3}, [F, F, F], S),  # count reached, limit not exceeded
        # inconclusiveLimit (default 0)
        (COUNT3, [S, I], I),
        ({**COUNT3, "inconclusiveLimit": 1}, [I, S], R),
        ({**COUNT3, "inconclusiveLimit": 1}, [I, I], I),
        ({**COUNT3, "inconclusiveLimit": 1}, [I, S, S], S),
        # consecutiveErrorLimit (default 4): errors in a row, reset by any other result
        (COUNT3, [E, E, E, E], R),
        (COUNT3, [E, E, E, E, E], E),
        (COUNT3, [E, E, E, E, S, E, E, E, E], R),
        ({**COUNT3, "consecutiveErrorLimit": 0}, [E], E),
        ({**COUNT3, "consecutiveErrorLimit": 1}, [E, S, E], R),
        ({**COUNT3, "consecutiveErrorLimit": 1}, [S, E, E], E),
        # errors do not count towards count
        (COUNT3, [S, E, S, E], R),
        (COUNT3, [S, E, S, E, S], S),
        # when several limits are exceeded, the later check wins: Error > Inconclusive > Failed
        ({**COUNT3, "consecutiveErrorLimit": 0}, [F, I, E], E),
        ({**COUNT3, "failureLimit": 0, "inconclusiveLimit": 0}, [F, I], I),
        ({"interval": "5s", "count": 4, "consecutiveErrorLimit": 0}, [F, E], E),
        # unbounded (interval without count): runs until a limit is exceeded
        ({"interval": "5s"}, [S] * 20, R),
        ({"interval": "5s", "failureLimit": 2}, [S, F, S, F, S, F], F),
        # count 0 is no count
        ({"interval": "5s", "count": 0}, [S] * 5, R),
        # consecutiveSuccessLimit: Successful once reached (before count)
        ({"interval": "5s", "count": 5, "consecutiveSuccessLimit": 2}, [S, S], S),
        ({"interval": "5s", "count": 5, "consecutiveSuccessLimit": 2}, [S, I], I),
        (
            {"interval": "5s", "count": 5, "consecutiveSuccessLimit": 2, "inconclusiveLimit": 2},
            [S, I, S],
            R,
        ),
        (
            {"interval": "5s", "count": 5, "consecutiveSuccessLimit": 2, "failureLimit": 3},
            [S, F, S, F, S],
            I,  # count reached: success limit not reached, failures within limit
        ),
        (
            {"interval": "5s", "count": 5, "consecutiveSuccessLimit": 2, "failureLimit": 3},
            [F, S, F, S, S],
            S,
        ),
        # failureLimit -1 (off) with a success limit: failures never fail the metric...
        (
            {"interval": "5s", "count": 5, "consecutiveSuccessLimit": 3, "failureLimit": -1},
            [F, F, F, F],
            R,
        ),
        (
            {"interval": "5s", "count": 5, "consecutiveSuccessLimit": 3, "failureLimit": -1},
            [F, F, S, S, S],
            S,
        ),
        # ...but reaching count without the success limit does
        (
            {"interval": "5s", "count": 5, "consecutiveSuccessLimit": 3, "failureLimit": -1},
            [F, S, S, F, S],
            F,
        ),
        # an error resets the successes in a row
        (
            {"interval": "5s", "count": 5, "consecutiveSuccessLimit": 2, "failureLimit": 1},
            [S, E, S],
            R,
        ),
        # unbounded with a success limit: run until reached
        (
            {"interval": "5s", "consecutiveSuccessLimit": 3, "failureLimit": -1},
            [F] * 10 + [S, S],
            R,
        ),
        (
            {"interval": "5s", "consecutiveSuccessLimit": 3, "failureLimit": -1},
            [F] * 10 + [S, S, S],
            S,
        ),
    ],
)
def test_assess_metric(fields: dict[str, Any], phases: list[Phase], expected: Phase) -> None:
    assert assess_metric(phases, metric(**fields)) == expected


@pytest.mark.parametrize(
    ("fields", "phases", "expected"),
    [
        ({}, [], S),  # stopped before the first measurement
        ({"interval": "5s"}, [S, S], S),  # an unbounded metric stopped by the rollout
        (COUNT3, [S], S),
        (COUNT3, [S, F], F),  # a limit already exceeded stays exceeded
        (COUNT3, [I], I),
        (COUNT3, [S, R], R),  # an in-flight measurement is still awaited
    ],
)
def test_assess_metric_when_the_run_is_terminating(
    fields: dict[str, Any], phases: list[Phase], expected: Phase
) -> None:
    assert assess_metric(phases, metric(**fields), terminating=True) == expected


def test_measurements_without_a_phase_are_scored_by_the_conditions() -> None:
    m = metric(interval="5s", count=3, failureLimit=1, successCondition="result <= 0.05")
    measurements = [Measurement(0.01), Measurement(0.2), Measurement(0.03)]
    assert assess_metric(measurements, m) == S
    assert assess_metric([*measurements[:2], Measurement(0.3)], m) == F
    # a phase the provider set wins over the conditions (no data: Inconclusive)
    assert assess_metric([Measurement(math.nan, I)], metric(successCondition="result < 1")) == I


@pytest.mark.parametrize(
    ("fields", "phases", "reason"),
    [
        (COUNT3, [F], "failed (1) > failureLimit (0)"),
        (COUNT3, [I], "inconclusive (1) > inconclusiveLimit (0)"),
        (COUNT3, [E] * 5, "consecutiveErrors (5) > consecutiveErrorLimit (4)"),
        (COUNT3, [S, S, S], "count (3) reached"),
        (COUNT3, [S], "1 of 3"),
        (
            {"interval": "5s", "count": 4, "consecutiveSuccessLimit": 2},
            [S, S],
            "consecutiveSuccess",
        ),
    ],
)
def test_assess_metric_says_why(fields: dict[str, Any], phases: list[Phase], reason: str) -> None:
    assert reason in assess_metric_reason(phases, metric(**fields))[1]


def test_tally_counts_like_argo() -> None:
    counts = tally([S, S, E, F, I, E, E, S, R], metric())
    assert counts == MetricTally(
        count=5,
        successful=3,
        failed=1,
        inconclusive=1,
        error=3,
        consecutive_error=0,
        consecutive_success=1,
    )
    assert tally([S, E, E], metric()).consecutive_error == 2


# -- the run -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ([S, S], S),
        ([S, R], R),
        ([S, P], R),
        ([P, P], R),
        ([S, I], I),
        ([R, I], I),  # an Inconclusive metric ends the run
        ([S, E], E),
        ([I, E], E),
        ([E, F], F),  # Failed is worse than Error
        ([F, E, I, S], F),
        ([R, F], F),
        ([S], S),
        ([], R),  # no metrics: Argo leaves the run Running
    ],
)
def test_assess_run_takes_the_worst(phases: list[Phase], expected: Phase) -> None:
    assert assess_run(phases) == expected


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (S, Verdict.CONTINUE),
        (F, Verdict.ABORT),
        (E, Verdict.ABORT),
        (I, Verdict.PAUSE),
        (R, Verdict.WAIT),
        (P, Verdict.WAIT),
    ],
)
def test_verdicts(phase: Phase, expected: Verdict) -> None:
    assert verdict(phase) == expected


def test_phases_and_verdicts_print_as_their_names() -> None:
    assert str(Phase.INCONCLUSIVE) == "Inconclusive"
    assert str(Verdict.ABORT) == "abort"
    assert Phase("Failed") is F
    assert [p.completed for p in (P, R, S, F, E, I)] == [False, False, True, True, True, True]


# -- scheduling --------------------------------------------------------------------


def done(phase: Phase | None, at: float, value: Any = 0.0) -> Measurement:
    return Measurement(value, phase, "", at - 0.5, at)


@pytest.mark.parametrize(
    ("fields", "measurements", "expected"),
    [
        ({}, [], 100.0),
        ({"initialDelay": "30s"}, [], 130.0),
        ({"interval": "5s", "count": 3}, [done(S, 101.0)], 106.0),
        ({"interval": "5s", "count": 3}, [done(S, 101.0), done(E, 103.0)], 113.0),
        ({"interval": "5s", "count": 2}, [done(S, 101.0), done(S, 106.0)], None),
        ({}, [done(S, 101.0)], None),
        ({}, [done(E, 101.0)], 101.0 + ERROR_RETRY_INTERVAL),
        ({"interval": "5s", "count": 3}, [done(F, 101.0)], None),  # decided: Failed
        ({"interval": "1m"}, [done(S, 101.0)], 161.0),
        ({"interval": "5s"}, [Measurement(0.0, R, "", 101.0, None)], None),  # in flight
        (
            {"interval": "5s", "count": 3, "successCondition": "result < 1", "failureLimit": 2},
            [done(None, 101.0, 0.5), done(None, 106.0, 5.0)],
            111.0,
        ),
    ],
)
def test_next_measurement_at(
    fields: dict[str, Any], measurements: list[Measurement], expected: float | None
) -> None:
    assert next_measurement_at(metric(**fields), measurements, started_at=100.0) == expected


def test_measurement_to_dict_is_json_safe() -> None:
    assert Measurement(math.nan, I, "no data", 1.0, 2.0).to_dict() == {
        "value": None,
        "phase": "Inconclusive",
        "message": "no data",
        "started_at": 1.0,
        "finished_at": 2.0,
    }
    assert Measurement([0.5, math.inf], None).to_dict()["value"] == [0.5, None]
    assert Measurement({"a": math.nan}).to_dict()["value"] == {"a": None}
    kept = Measurement([0.5], F, "x", 1.0, 2.0)
    assert Measurement.from_dict(kept.to_dict()) == kept
    assert Measurement.from_dict({"value": 1}) == Measurement(1)
