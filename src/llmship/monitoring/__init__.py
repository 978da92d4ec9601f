"""What it takes to watch llmship: the shipped Prometheus rules and Grafana dashboard.

The files beside this module are the one copy of each: ``deploy/`` links to them for
the local stack, and ``llmship k8s chart`` puts them into the Helm chart.
"""

from __future__ import annotations

import sys
from importlib.resources import files

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable

__all__ = ["asset"]


def asset(name: str) -> Traversable:
    """The shipped monitoring file ``name`` (for example ``rules.yml``)."""
    return files(__name__) / name
