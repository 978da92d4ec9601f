"""Analysis: metrics, their providers, and verdicts with Argo Rollouts' semantics.

A rollout's analysis is a set of metrics (from ``analysisTemplates``). The
controller asks :func:`next_measurement_at` when each metric is due, takes it
with :func:`run_measurement`, folds the measurements with :func:`assess_metric`,
combines metrics with :func:`assess_run`, and acts on :func:`verdict`:
Successful -> continue, Failed or Error -> abort, Inconclusive -> pause.
See docs/analysis.md.
"""

from llmship.analysis.compare import compare_to_stable, decide_experiment
from llmship.analysis.durations import Duration, format_duration, parse_duration
from llmship.analysis.expr import Condition, ConditionError, compile_condition
from llmship.analysis.jsonpath import JsonPath, JsonPathError, compile_path
from llmship.analysis.models import (
    AnalysisRef,
    AnalysisRunSpec,
    AnalysisTemplate,
    Argument,
    BuiltinMetric,
    Header,
    Metric,
    MetricProvider,
    PrometheusMetric,
    RefArgument,
    TemplateRef,
    WebMetric,
    resolve_analysis,
)
from llmship.analysis.phases import (
    ERROR_RETRY_INTERVAL,
    Measurement,
    MetricPhase,
    MetricTally,
    Phase,
    RunPhase,
    Verdict,
    assess_measurement,
    assess_metric,
    assess_metric_reason,
    assess_run,
    next_measurement_at,
    tally,
    verdict,
)
from llmship.analysis.providers import (
    BuiltinProvider,
    MeasureContext,
    MeasurementError,
    PrometheusProvider,
    Provider,
    Providers,
    WebProvider,
    run_measurement,
)
from llmship.analysis.stats import (
    BUILTIN_METRICS,
    GoodputSlo,
    StatsSource,
    VersionStats,
    builtin_value,
)

__all__ = [
    "BUILTIN_METRICS",
    "ERROR_RETRY_INTERVAL",
    "AnalysisRef",
    "AnalysisRunSpec",
    "AnalysisTemplate",
    "Argument",
    "BuiltinMetric",
    "BuiltinProvider",
    "Condition",
    "ConditionError",
    "Duration",
    "GoodputSlo",
    "Header",
    "JsonPath",
    "JsonPathError",
    "MeasureContext",
    "Measurement",
    "MeasurementError",
    "Metric",
    "MetricPhase",
    "MetricProvider",
    "MetricTally",
    "Phase",
    "PrometheusMetric",
    "PrometheusProvider",
    "Provider",
    "Providers",
    "RefArgument",
    "RunPhase",
    "StatsSource",
    "TemplateRef",
    "Verdict",
    "VersionStats",
    "WebMetric",
    "WebProvider",
    "assess_measurement",
    "assess_metric",
    "assess_metric_reason",
    "assess_run",
    "builtin_value",
    "compare_to_stable",
    "compile_condition",
    "compile_path",
    "decide_experiment",
    "format_duration",
    "next_measurement_at",
    "parse_duration",
    "resolve_analysis",
    "run_measurement",
    "tally",
    "verdict",
]
