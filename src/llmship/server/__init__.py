"""The model server: one release behind OpenAI-compatible endpoints and /predict.

The names below load on first use, so that importing the wire models
(``llmship.server.protocol``) does not load the app.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmship.server.app import build_service, create_app
    from llmship.server.serving import ModelService

__all__ = ["ModelService", "build_service", "create_app"]

_HOMES = {
    "ModelService": "llmship.server.serving",
    "build_service": "llmship.server.app",
    "create_app": "llmship.server.app",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
