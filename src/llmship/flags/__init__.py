"""Feature flags with sticky percentage rollout and targeting."""

from llmship.flags.model import Flag, alternate_name, parse_conditions

__all__ = ["Flag", "alternate_name", "parse_conditions"]
