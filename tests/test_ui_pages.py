"""The dashboard's files as the gateway serves them (``gateway/ui.py``), without a browser:
every page is ``index.html`` (200, or 404 for a rollout or path that does not exist),
the scripts and styles come with their content types, nothing outside ``ui_files/`` is
served, and the ES modules hang together: each import names a file that is served and a
name that module exports (and, where ``node`` is installed, each parses)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from _registry import chat_registry
from llmship.gateway import create_app
from llmship.gateway.ui import FILES
from llmship.registry import Registry
from llmship.rollout import ops
from llmship.rollout.spec import parse_rollout
from llmship.settings import Settings

UI = Path(str(FILES))
IMPORT = re.compile(
    r"""^import\s+(?:\{(?P<names>[^}]*)\}\s+from\s+)?["']\./(?P<file>[^"']+)["'];""", re.M
)
EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function\*?|const|let|class)\s+(?P<name>\w+)", re.M)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Registry]]:
    """A gateway over a SQLite registry holding chat@1.0.0 (production of dev), chat@1.1.0
    and a canary of 1.1.0."""
    with chat_registry(tmp_path / "r.db") as registry:
        settings = Settings(home=tmp_path, env="dev", admin_token="t", read_access="open")
        with TestClient(create_app(registry, settings)) as test_client:
            yield test_client, registry


def canary(registry: Registry) -> int:
    spec = parse_rollout({"name": "canary", "strategy": {"canary": {"steps": [{"setWeight": 20}]}}})
    record = ops.start(registry, spec, "chat@1.1.0", env="dev", actor="ci", force=True, reason="t")
    return record.id


def test_every_page_is_the_shell(client: tuple[TestClient, Registry]) -> None:
    http, registry = client
    rollout = canary(registry)
    for path in ("/ui", "/ui/rollouts", f"/ui/rollouts/{rollout}", "/ui/releases", "/ui/evals"):
        page = http.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<script type="module" src="/ui/static/main.js">' in page.text
        assert '<main id="main"' in page.text
    assert http.get("/ui/rollouts/", follow_redirects=False).status_code == 200
    slash = http.get("/ui/", follow_redirects=False)
    assert slash.status_code == 308 and slash.headers["location"] == "/ui"


def test_what_does_not_exist_is_a_404_page(client: tuple[TestClient, Registry]) -> None:
    http, _ = client
    for path in ("/ui/rollouts/999", "/ui/rollouts/not-a-number", "/ui/nope", "/ui/rollouts/1/x"):
        page = http.get(path)
        assert page.status_code == 404, path
        assert '<script type="module" src="/ui/static/main.js">' in page.text, path


def test_scripts_and_styles_come_with_their_types(client: tuple[TestClient, Registry]) -> None:
    http, _ = client
    for name in ("main.js", "app.js", "charts.js", "pages_rollouts.js", "rollout.js", "live.js"):
        script = http.get(f"/ui/static/{name}")
        assert script.status_code == 200, name
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert script.text == (UI / name).read_text()
    style = http.get("/ui/static/style.css")
    assert style.status_code == 200 and style.headers["content-type"] == "text/css; charset=utf-8"
    for name in ("nothing.js", "..%2Fui.py", ".hidden.js", "index", "ui.py"):
        assert http.get(f"/ui/static/{name}").status_code == 404, name
    assert http.get("/ui/static/../ui.py").status_code == 404


def modules() -> dict[str, str]:
    """The modules main.js loads, by file name, with their text (following imports)."""
    found: dict[str, str] = {}
    todo = ["main.js"]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        assert (UI / name).is_file(), f"an import names {name}, which ui_files/ lacks"
        found[name] = (UI / name).read_text()
        todo += [m["file"] for m in IMPORT.finditer(found[name])]
    return found


def test_the_modules_import_what_they_export() -> None:
    loaded = modules()
    assert {
        "app.js",
        "pages_rollouts.js",
        "rollout.js",
        "actions.js",
        "live.js",
        "traffic.js",
    } <= set(loaded)
    for name, text in loaded.items():
        for imported in IMPORT.finditer(text):
            exported = set(EXPORT.findall(loaded[imported["file"]]))
            names = (n.split(" as ")[0].strip() for n in (imported["names"] or "").split(","))
            for wanted in filter(None, names):
                assert wanted in exported, (
                    f"{name} imports {wanted} from {imported['file']}, which does not export it"
                )


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_modules_parse(tmp_path: Path) -> None:
    for name, text in modules().items():
        copy = tmp_path / f"{name}.mjs"
        copy.write_text(text)
        checked = subprocess.run(
            ["node", "--check", str(copy)], check=False, capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0, f"{name}: {checked.stderr}"
