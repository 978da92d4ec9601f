"""The registry's methods for alert actions: what an alert did to production after a promotion.

They are methods of ``Registry`` (which inherits them).
"""

from __future__ import annotations

from llmship.registry._base import Store


class AlertActionMethods(Store):
    """Registry methods for alert actions: what an alert did to production after a promotion."""
