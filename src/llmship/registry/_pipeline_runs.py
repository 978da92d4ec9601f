"""The registry's methods for pipeline runs: each stage of ``llmship pipeline run``.

They are methods of ``Registry`` (which inherits them).
"""

from __future__ import annotations

from llmship.registry._base import Store


class PipelineRunMethods(Store):
    """Registry methods for pipeline runs: each stage of ``llmship pipeline run``."""
