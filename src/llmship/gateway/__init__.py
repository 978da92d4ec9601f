"""The gateway: routes each request to a release by the traffic policy, retries a failed
candidate on stable, mirrors shadow traffic, takes feedback and serves the admin API."""

from llmship.gateway.app import Gateway, create_app
from llmship.gateway.store import GatewayStore

__all__ = ["Gateway", "GatewayStore", "create_app"]
