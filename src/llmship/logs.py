"""Log lines of llmship's long-running processes (serve, gateway, controller, up): one
place that sets up the handler, in either of two formats (the ``log_format`` setting).

- ``text``: ``TIME LEVEL LOGGER MESSAGE``; an access line's message is ``key=value``
  pairs (``id=... version=... status=200 latency_ms=12.3 trace_id=...``).
- ``json``: one JSON object a line, with ``timestamp`` (RFC 3339, UTC), ``level``,
  ``logger`` and ``message``; an access line adds its fields as keys
  (``request_id``, ``method``, ``path``, ``status``, ``duration_ms``, ``trace_id``,
  ...), and any line logged inside a traced request carries ``trace_id`` and
  ``span_id``.

Library code only calls :func:`access` (or ``logging.getLogger(__name__)``); the
command-line entry points call :func:`configure`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace

__all__ = ["FORMATS", "AccessLine", "JsonFormatter", "access", "configure"]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
QUIET = ("alembic", "httpx")
"""Loggers that say too much at INFO."""

TEXT_KEYS = {"request_id": "id", "duration_ms": "latency_ms"}
"""Field names of an access line written otherwise in the text format (the names it
has always had, so that existing log parsers keep working)."""
QUOTED = frozenset({"prompt", "response"})
"""Fields that the text format always writes JSON-quoted (free text)."""


class AccessLine:
    """The message of one access-log line: its fields, rendered as ``key=value`` pairs
    only when a text handler asks (:class:`JsonFormatter` takes the fields as they are)."""

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[str, Any]):
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(
            f"{TEXT_KEYS.get(key, key)}={_text_value(key, value)}"
            for key, value in self.fields.items()
            if value is not None
        )

    def summary(self) -> str:
        """``METHOD PATH STATUS``: the message of the line in the JSON format."""
        fields = self.fields
        return " ".join(
            str(fields[key]) for key in ("method", "path", "status") if fields.get(key) is not None
        )


def _text_value(key: str, value: Any) -> str:
    if key in QUOTED:
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def access(logger: logging.Logger, fields: Mapping[str, Any]) -> None:
    """Write one access-log line with ``fields`` at INFO (``None`` values are left out)."""
    logger.info(AccessLine(fields))


def trace_ids(span: trace.Span | None = None) -> tuple[str, str] | None:
    """The hex trace id and span id of ``span`` (default: the current span), or None
    when there is none (tracing off, or outside a request)."""
    context = (span or trace.get_current_span()).get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``timestamp`` (RFC 3339, UTC, milliseconds),
    ``level``, ``logger``, ``message``; an :class:`AccessLine`'s fields; the current
    span's ``trace_id`` and ``span_id``; ``exception`` with the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, timezone.utc)
        line: dict[str, Any] = {
            "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
        }
        if isinstance(record.msg, AccessLine):
            line["message"] = record.msg.summary()
            line.update((k, v) for k, v in record.msg.fields.items() if v is not None)
        else:
            line["message"] = record.getMessage()
        if "trace_id" not in line:
            ids = trace_ids()
            if ids is not None:
                line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``fmt`` (``text`` or ``json``)."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")


def configure(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level`` in format ``fmt``, once per process (like
    ``logging.basicConfig``: nothing changes when the root logger has a handler
    already, e.g. under pytest). uvicorn runs with ``log_config=None`` and its access
    log off, so its own lines come here too and each request is logged once, by
    llmship's access logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
