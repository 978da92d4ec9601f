"""The Helm chart shipped in the package, and writing it out with its monitoring files.

The chart's templates live beside this module (``chart/``). Its ``files/`` folder is
not kept there: :func:`write_chart` fills it from :mod:`llmship.monitoring`, the one
copy of the Prometheus rules and the Grafana dashboard, so the chart and the local
stack cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from llmship.errors import InvalidRequestError

if TYPE_CHECKING:
    from importlib.abc import Traversable  # importlib.resources.abc from Python 3.11

__all__ = ["CHART_NAME", "MONITORING_SUFFIXES", "WrittenChart", "chart_source", "write_chart"]

CHART_NAME = "llmship"
MONITORING_SUFFIXES = (".yml", ".yaml", ".json")
"""Shipped monitoring files copied into the chart's ``files/``."""
_SKIPPED = ("__pycache__", ".pyc")


@dataclass(frozen=True)
class WrittenChart:
    """What ``write_chart`` wrote: the chart folder and each file, relative to it."""

    path: Path
    files: tuple[str, ...]


def chart_source() -> Traversable:
    """The chart shipped in the package (templates, values and their schema)."""
    return files("llmship.k8s") / "chart"


def _walk(node: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    """(relative path, file) of every file under ``node``, sorted."""
    found: list[tuple[str, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name.endswith(_SKIPPED):
            continue
        relative = f"{prefix}{child.name}"
        if child.is_dir():
            found.extend(_walk(child, f"{relative}/"))
        else:
            found.append((relative, child))
    return found


def _monitoring_files() -> list[tuple[str, Traversable]]:
    """The shipped monitoring files, as ``files/NAME``."""
    monitoring = files("llmship.monitoring")
    return [
        (f"files/{item.name}", item)
        for item in sorted(monitoring.iterdir(), key=lambda c: c.name)
        if item.is_file() and item.name.endswith(MONITORING_SUFFIXES)
    ]


def write_chart(out: Path, *, force: bool = False) -> WrittenChart:
    """Write the chart into ``out`` (created), its ``files/`` filled from the package.

    Raises InvalidRequestError, writing nothing, when ``out`` is a file or a folder
    that is not empty (unless ``force``: then the chart's files replace those there).
    """
    if out.exists() and not out.is_dir():
        raise InvalidRequestError(f"--out {out}: is a file, not a folder", param="out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InvalidRequestError(
            f"--out {out}: the folder is not empty; give --force to write the chart over it",
            param="out",
        )
    entries = [*_walk(chart_source()), *_monitoring_files()]
    for relative, source in entries:
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    return WrittenChart(path=out, files=tuple(relative for relative, _ in entries))
