"""The dashboard at ``/ui``: static files shipped in the package, served by the gateway.

Every page is the same ``index.html`` (the page's script draws it from the API); a page
of a rollout, release or run that does not exist is answered 404 with the page that
says so, and so is a path that is no page.
"""

from __future__ import annotations

import asyncio
import re
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from llmship.errors import NotFoundError
from llmship.gateway.api_common import gateway_of
from llmship.registry import Registry

router = APIRouter(include_in_schema=False)

FILES = resources.files("llmship.gateway") / "ui_files"
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}
PAGES = (
    re.compile(r"^$"),
    re.compile(r"^(rollouts|releases|evals|loadtests|feedback)$"),
    re.compile(r"^releases/diff$"),
    re.compile(r"^rollouts/(?P<rollout>[^/]+)$"),
    re.compile(r"^releases/(?P<name>[^/]+)/(?P<version>[^/]+)$"),
    re.compile(r"^(?P<kind>evals|loadtests)/(?P<run>[^/]+)$"),
)
NO_CACHE = {"Cache-Control": "no-cache"}


def _index(status: int = 200) -> HTMLResponse:
    return HTMLResponse((FILES / "index.html").read_text(), status_code=status, headers=NO_CACHE)


@router.get("/ui/static/{name}")
async def static(name: str) -> Response:
    """A file of the dashboard (scripts, styles)."""
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    path = FILES / name
    if "/" in name or name.startswith(".") or suffix not in TYPES or not path.is_file():
        return Response("no such file", status_code=404, media_type="text/plain")
    return Response(path.read_bytes(), media_type=TYPES[suffix], headers=NO_CACHE)


@router.get("/ui")
async def home() -> HTMLResponse:
    """The overview."""
    return _index()


@router.get("/ui/")
async def home_slash() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=308)


@router.get("/ui/{path:path}")
async def page(path: str, request: Request) -> HTMLResponse:
    """A page of the dashboard: 404 (with the page saying so) for one that does not
    exist, or whose rollout, release or run does not."""
    path = path.strip("/")
    for pattern in PAGES:
        match = pattern.match(path)
        if match:
            found = await asyncio.to_thread(_exists, gateway_of(request).store, match.groupdict())
            return _index(200 if found else 404)
    return _index(404)


def _exists(store: Any, ids: dict[str, str]) -> bool:
    """Whether what the page shows exists (true when the gateway has no registry to ask:
    the page then says what the API answers)."""
    if not ids or not isinstance(store, Registry):
        return True
    try:
        if "rollout" in ids:
            store.get_rollout(_id(ids["rollout"]))
        elif "run" in ids:
            run = store.get_gate_run(_id(ids["run"]))
            return run.kind == {"evals": "eval", "loadtests": "loadtest"}[ids["kind"]]
        elif "name" in ids:
            store.get(ids["name"], ids["version"])
    except (NotFoundError, ValueError):
        return False
    return True


def _id(text: str) -> int:
    """A record's id in a page's path; ValueError unless a whole number SQL can hold."""
    number = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= number < 2**63:
        raise ValueError(f"{text!r} is not an id")
    return number
