"""What the gateway needs from the registry: a small interface with an in-memory fake.

:class:`llmship.registry.Registry` implements it; tests use a fake. Every method
blocks (database I/O), so the gateway calls them in a worker thread, never on
the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from llmship.flags import Flag
from llmship.registry.records import (
    Endpoint,
    FeedbackRecord,
    GatewayRecord,
    QueryRecord,
    RolloutRecord,
)
from llmship.registry.traffic_ops import TrafficStore


class GatewayStore(TrafficStore, Protocol):
    """The registry methods the gateway calls (see the registry's docs for each): those of
    the traffic workflows, and endpoints, queries, feedback, flags and rollouts."""

    def list_endpoints(self, env: str, *, max_age_s: float | None = None) -> list[Endpoint]: ...

    def record_queries(self, rows: Sequence[QueryRecord]) -> None: ...

    def get_query(self, query_id: str) -> QueryRecord: ...

    def add_feedback(
        self,
        query_id: str,
        *,
        rating: int | None = None,
        thumbs: str | None = None,
        comment: str | None = None,
        actor: str | None = None,
        user: str | None = None,
    ) -> list[FeedbackRecord]: ...

    def feedback_secret(self) -> bytes: ...

    def set_flag(self, env: str, flag: Flag, *, actor: str) -> Flag: ...

    def toggle_flag(self, env: str, name: str, *, actor: str) -> Flag: ...

    def get_flag(self, env: str, name: str) -> Flag: ...

    def list_flags(self, env: str) -> list[Flag]: ...

    def delete_flag(self, env: str, name: str, *, actor: str) -> None: ...

    def list_feedback(
        self, env: str, ref: str, *, since: datetime | None = None
    ) -> list[FeedbackRecord]: ...

    def list_rollouts(
        self, env: str | None = None, *, active_only: bool = False, limit: int = 50
    ) -> list[RolloutRecord]: ...

    def request_rollout_abort(
        self, env: str, rollout_id: int, *, reason: str, dedupe_key: str
    ) -> bool: ...


@runtime_checkable
class GatewayDirectory(Protocol):
    """Where gateways announce themselves and hear of changes (the registry has it; a
    store without it gives a gateway that neither announces itself nor listens)."""

    def announce_gateway(
        self,
        env: str,
        instance: str,
        url: str,
        *,
        pid: int | None,
        host: str,
        policy_revision: int | None = None,
        recent_requests: int = 0,
    ) -> GatewayRecord: ...

    def remove_gateway(self, env: str, instance: str) -> None: ...

    def change_channel(self) -> str | None: ...
