"""Where traffic policies are kept: the one interface every caller that reads and
changes an environment's policy types against.

:class:`llmship.registry.Registry` implements it (and its fenced view); the traffic
workflows (``registry/traffic_ops.py``), the controller's traffic router
(``rollout/traffic_router.py``) and the gateway (``gateway/store.py``) extend it with
the few other methods each calls.
"""

from __future__ import annotations

from typing import Protocol

from llmship.routing.policy import TrafficPolicy

__all__ = ["TrafficPolicies"]


class TrafficPolicies(Protocol):
    """Read, replace and promote the traffic policy of an environment."""

    def get_traffic(self, env: str) -> TrafficPolicy: ...

    def set_traffic(
        self,
        env: str,
        policy: TrafficPolicy,
        *,
        actor: str,
        reason: str,
        expected_revision: int | None = None,
        force: bool = False,
    ) -> TrafficPolicy: ...

    def promote_preview(
        self, env: str, *, actor: str, reason: str, force: bool = False
    ) -> TrafficPolicy: ...
