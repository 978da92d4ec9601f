"""The registry's methods for approvals: promotions that wait for a person.

They are methods of ``Registry`` (which inherits them).
"""

from __future__ import annotations

from llmship.registry._base import Store


class ApprovalMethods(Store):
    """Registry methods for approvals: promotions that wait for a person."""
