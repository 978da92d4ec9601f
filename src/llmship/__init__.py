"""llmship: release engineering for LLM services."""

from importlib import metadata

try:
    __version__ = metadata.version("llmship")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
