"""Feature flags with sticky percentage rollout and targeting."""

from llmship.flags.model import Flag, parse_conditions

__all__ = ["Flag", "parse_conditions"]
