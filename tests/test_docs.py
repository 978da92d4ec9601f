"""The documentation is checked against the code (after datasette's ``test_docs.py``).

A setting, CLI command, metric or release-spec field that the docs do not
mention fails here, and so does an example in the docs that the code rejects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from prometheus_client.metrics import MetricWrapperBase
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from fakes import FakeBackend
from fakes_gateway import FakeStore
from llmship.cli import app
from llmship.gateway import create_app as create_gateway
from llmship.release.bundled import bundled_spec
from llmship.release.spec import ReleaseSpec, load_spec, parse_spec
from llmship.server import ModelService, create_app
from llmship.server.metrics import GpuCollector, ServerMetrics
from llmship.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _all_docs() -> str:
    """README.md and every page under docs/, one string."""
    return "\n".join(_text(p) for p in [README, *sorted(DOCS.glob("*.md"))])


def _rows(text: str, key: str) -> list[str]:
    """Markdown table rows whose first cell is exactly `key` (in backticks)."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells and cells[0] == f"`{key}`":
            rows.append(line)
    return rows


def _default_text(field: Any) -> str | None:
    """How a plain default is written in the docs (`0.7`, `false`); None for no default."""
    default = field.default
    if default is PydanticUndefined or default is None or field.default_factory is not None:
        return None
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, (int, float, str, Path)):
        return f"`{default}`"
    return None


def _prose(text: str) -> str:
    """``text`` without code blocks and inline code."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def _code_blocks(text: str, lang: str | None = None) -> list[str]:
    """Fenced code blocks of ``text`` (only those marked ``lang`` when given)."""
    blocks = re.findall(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    return [body for tag, body in blocks if lang is None or tag == lang]


# -- (a) settings ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    field = Settings.model_fields[name]
    env = f"LLMSHIP_{name.upper()}"
    rows = _rows(_text(DOCS / "configuration.md"), name)
    assert rows, f"docs/configuration.md has no table row for the setting `{name}`"
    row = rows[0]
    assert f"`{env}`" in row, f"docs/configuration.md: the row of `{name}` lacks `{env}`"
    default = _default_text(field)
    if default is not None:
        assert default.lower() in row.lower(), (
            f"docs/configuration.md: the row of `{name}` does not give its default {default}"
        )


def test_configuration_example_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in [v for v in os.environ if v.startswith("LLMSHIP_")]:
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)  # no llmship.yaml here: only the example's values count
    examples = _code_blocks(_text(DOCS / "configuration.md"), "yaml")
    assert examples, "docs/configuration.md has no llmship.yaml example"
    for example in examples:
        data = yaml.safe_load(example)
        unknown = sorted(set(data) - set(Settings.model_fields))
        assert not unknown, f"docs/configuration.md example uses unknown settings {unknown}"
        Settings(**data)


# -- (b) CLI -----------------------------------------------------------------------


def _commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every command below ``command`` (a click-style group: Typer vendors click)."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not getattr(sub, "hidden", False):
            yield from _commands(sub, f"{path} {name}")


COMMANDS = dict(list(_commands(typer.main.get_command(app), "llmship"))[1:])


def test_the_cli_has_commands() -> None:
    assert {"llmship serve", "llmship models", "llmship alias"} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_is_documented(path: str) -> None:
    docs = _all_docs()
    assert path in docs, f"no page of README.md or docs/ mentions `{path}`"
    command = COMMANDS[path]
    if hasattr(command, "commands"):
        return
    for param in command.params:
        for option in getattr(param, "opts", []):
            if option.startswith("--") and option != "--help":
                assert option in docs, f"`{path} {option}` is not documented"


# -- (c) metrics -------------------------------------------------------------------


def _metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every exposed metric name, with its type and label names."""
    server = ServerMetrics("docs-check@1.0.0")
    families = list(server.registry.collect())
    families += list(GpuCollector("docs-check@1.0.0", handles=[]).collect())
    labels: dict[str, tuple[str, ...]] = {
        wrapper._name: tuple(wrapper._labelnames)
        for wrapper in vars(server).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    found = {}
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        names = labels.get(family.name, tuple(getattr(family, "_labelnames", ())))
        found[name] = (family.type, names)
    return found


METRICS = _metrics()


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_is_documented(name: str) -> None:
    kind, labels = METRICS[name]
    rows = _rows(_text(DOCS / "serving.md"), name)
    assert rows, f"docs/serving.md has no table row for the metric `{name}`"
    assert kind in rows[0], f"docs/serving.md: `{name}` is a {kind}; its row does not say so"
    for label in labels:
        assert f"`{label}`" in rows[0], f"docs/serving.md: `{name}` row lacks label `{label}`"


def test_the_seeds_metrics_are_there() -> None:
    wanted = {"http_requests_total", "model_latency_seconds", "tokens_per_second"}
    assert wanted | {"gpu_usage_percent"} <= set(METRICS)


# -- (d) README ----------------------------------------------------------------------


def test_readme_begins_with_the_two_commands() -> None:
    text = _text(README)
    before = text.split("```", 1)[0]
    lines = [line for line in before.splitlines() if line.strip()]
    assert len(lines) == 2, "README.md: a title and one sentence, then the commands"
    assert lines[0].startswith("# "), "README.md must start with its title"
    first = _code_blocks(text)[0]
    commands = [line.split("#", 1)[0].strip() for line in first.splitlines()]
    assert [c for c in commands if c] == ["make up", "make test"]
    makefile = _text(ROOT / "Makefile")
    for target in ("up", "test"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"Makefile has no `{target}`"


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize(
    "page", [README, ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name
)
def test_links_between_pages_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", _prose(_text(page))):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        assert linked.exists(), f"{page.name}: the link {target} leads nowhere"
        if anchor and linked.suffix == ".md":
            page_text = re.sub(r"^```.*?^```", "", _text(linked), flags=re.M | re.S)
            headings = re.findall(r"^#+ (.+)$", page_text, flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"{page.name}: no #{anchor}"


# -- (e) release specs -----------------------------------------------------------------


def _spec_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, field in model.model_fields.items():
        yield prefix + name, field
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _spec_fields(field.annotation, f"{prefix}{name}.")


SPEC_FIELDS = dict(_spec_fields(ReleaseSpec))


@pytest.mark.parametrize("path", sorted(SPEC_FIELDS))
def test_every_spec_field_is_documented(path: str) -> None:
    rows = _rows(_text(DOCS / "release-specs.md"), path)
    assert rows, f"docs/release-specs.md has no table row for `{path}`"
    default = _default_text(SPEC_FIELDS[path])
    if default is not None:
        assert default in rows[0], f"docs/release-specs.md: `{path}` row lacks its default"


@pytest.mark.parametrize("page", ["release-specs.md", "serving.md"])
def test_spec_examples_are_valid(page: str) -> None:
    examples = [
        data
        for data in map(yaml.safe_load, _code_blocks(_text(DOCS / page), "yaml"))
        if isinstance(data, dict) and "version" in data
    ]
    assert examples, f"docs/{page} has no release spec example"
    for data in examples:
        parse_spec(data, source=f"docs/{page}")


def test_bundled_spec_file_matches_the_bundled_release() -> None:
    assert load_spec(ROOT / "models" / "smollm2-chat-1.0.0.yaml") == bundled_spec()


# -- (f) HTTP endpoints ------------------------------------------------------------------


def _endpoints() -> Iterator[tuple[str, str, str]]:
    """(page, method, path) of every operation in the OpenAPI schema of each service (the
    dashboard's API is documented with the dashboard)."""
    cfg = Settings(home=Path("/nonexistent"))
    spec = bundled_spec()
    server = create_app(ModelService(spec, FakeBackend(), cfg, ServerMetrics(spec.ref)))
    gateway = create_gateway(FakeStore([spec.ref], production=spec.ref), cfg)
    for page, service in (("serving.md", server), ("gateway.md", gateway)):
        for path, operations in service.openapi()["paths"].items():
            for method, operation in operations.items():
                dashboard = "dashboard" in operation.get("tags", ())
                yield ("dashboard.md" if dashboard else page), method.upper(), path


@pytest.mark.parametrize(("page", "method", "path"), sorted(_endpoints()))
def test_every_endpoint_is_documented(page: str, method: str, path: str) -> None:
    text = _text(DOCS / page)
    named = re.compile(rf"`{method} {re.escape(path)}[`?]")  # a query string may follow
    rows = [line for line in text.splitlines() if f" {path}`" in line]
    assert named.search(text) or any(f"`{method}`" in row for row in rows), (
        f"docs/{page} does not document `{method} {path}`"
    )
