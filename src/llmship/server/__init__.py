"""The model server: one release behind OpenAI-compatible endpoints and /predict."""

from llmship.server.app import build_service, create_app
from llmship.server.serving import ModelService

__all__ = ["ModelService", "build_service", "create_app"]
