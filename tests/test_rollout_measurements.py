"""When the controller takes an analysis metric's first measurement."""

from __future__ import annotations

from typing import Any

from llmship.analysis.models import Metric
from llmship.analysis.phases import Measurement, Phase
from llmship.rollout.measurements import first_measurement_at


def test_the_first_measurement_of_an_interval_metric_waits_one_interval() -> None:
    def metric(**fields: Any) -> Metric:
        return Metric.model_validate(
            {"name": "m", "provider": {"builtin": {"metric": "error_rate"}}, **fields}
        )

    assert first_measurement_at(metric(interval="5s"), [], started_at=100) == 105
    assert first_measurement_at(metric(interval="5s", initialDelay="1s"), [], started_at=100) == 101
    assert first_measurement_at(metric(), [], started_at=100) == 100
    taken = [Measurement(0.0, Phase.SUCCESSFUL, finished_at=105.5)]
    assert first_measurement_at(metric(interval="5s", count=3), taken, started_at=100) == 110.5
