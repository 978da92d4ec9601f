"""Traffic decisions: the policy, sticky hashing, and the choice for each request."""

from llmship.routing.decide import NoReleaseError, Route, choose, mirror
from llmship.routing.policy import (
    Experiment,
    PolicyDocument,
    PolicyFields,
    TrafficPolicy,
    Variant,
)
from llmship.routing.sticky import bucket, in_percent

__all__ = [
    "Experiment",
    "NoReleaseError",
    "PolicyDocument",
    "PolicyFields",
    "Route",
    "TrafficPolicy",
    "Variant",
    "bucket",
    "choose",
    "in_percent",
    "mirror",
]
