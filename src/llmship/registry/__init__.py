"""The release registry: releases, aliases, alias history and events in SQL, and what
the gateway shares (traffic policies, endpoints, queries, feedback, flags).

SQLite under ``LLMSHIP_HOME`` by default, PostgreSQL through
``LLMSHIP_DATABASE_URL``; the schema is migrated by Alembic when opened::

    with Registry.open(settings.registry_url, home=settings.home) as registry:
        record, created = registry.register(spec, actor="ci")
        registry.set_alias("dev", "production", record.ref, actor="ci", reason="first release")
"""

from llmship.registry._alert_actions import AlertAction, AlertActionKind
from llmship.registry._approvals import ApprovalRecord
from llmship.registry._pipeline_runs import PipelineRun, PipelineStage
from llmship.registry.records import (
    AliasMove,
    AliasRecord,
    Endpoint,
    Event,
    FeedbackRecord,
    FeedbackSummary,
    GateRun,
    MeasurementRecord,
    QueryRecord,
    ReleaseRecord,
    RolloutIntent,
    RolloutRecord,
    RolloutUpdate,
)
from llmship.registry.store import ALIAS_PATTERN, Registry

__all__ = [
    "ALIAS_PATTERN",
    "AlertAction",
    "AlertActionKind",
    "AliasMove",
    "AliasRecord",
    "ApprovalRecord",
    "Endpoint",
    "Event",
    "FeedbackRecord",
    "FeedbackSummary",
    "GateRun",
    "MeasurementRecord",
    "PipelineRun",
    "PipelineStage",
    "QueryRecord",
    "Registry",
    "ReleaseRecord",
    "RolloutIntent",
    "RolloutRecord",
    "RolloutUpdate",
]
