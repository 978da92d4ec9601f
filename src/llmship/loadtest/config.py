"""The load-test gate in ``llmship.yaml``::

    gates:
      loadtest:
        slo:
          ttft_p95: 0.5        # seconds (or "500ms")
          error_rate: 0.01     # or "1%"
          throughput_min: 2

``--slo`` flags override these key by key. The file is ``LLMSHIP_CONFIG`` or
``./llmship.yaml``, as for the settings (and ``gates: eval:`` of ``llmship eval``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmship.errors import InvalidRequestError, SpecError
from llmship.loadtest.slo import slo_value
from llmship.settings import read_config


class LoadTestGateConfig(BaseModel):
    """``gates.loadtest`` of ``llmship.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slo: dict[str, float] = Field(
        default_factory=dict,
        description="SLO key -> bound, as the `--slo` flags take them (flags win).",
    )

    @field_validator("slo", mode="before")
    @classmethod
    def _slo(cls, value: Any) -> dict[str, float]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("must be a mapping of SLO key: bound")
        try:
            return {str(k): slo_value(str(k), v) for k, v in value.items()}
        except InvalidRequestError as exc:
            raise ValueError(exc.message) from None


def load_gate_config(path: Path | None = None) -> LoadTestGateConfig:
    """The load-test gate of the config file; an empty one when there is none."""
    path, data = read_config(path)
    gates = data.get("gates") if isinstance(data, dict) else None
    section = gates.get("loadtest") if isinstance(gates, dict) else None
    if section is None:
        return LoadTestGateConfig()
    if not isinstance(section, dict):
        raise SpecError(f"{path}: gates.loadtest: must be a mapping (slo:)")
    try:
        return LoadTestGateConfig.model_validate(section)
    except ValidationError as exc:
        problems = "; ".join(
            f"gates.loadtest.{'.'.join(str(p) for p in e['loc'])}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise SpecError(f"{path}: {problems}") from exc


def merged_slos(config: LoadTestGateConfig, flags: dict[str, float]) -> dict[str, float]:
    """The SLOs of a run: the file's, overridden key by key by the flags."""
    return {**config.slo, **flags}
