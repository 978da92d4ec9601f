"""Release specs: validation messages, digests, references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmship.errors import SpecError
from llmship.release.bundled import bundled_spec
from llmship.release.spec import load_spec, parse_ref, parse_spec

BASE: dict[str, Any] = {
    "name": "chat",
    "version": "1.0.0",
    "backend": "openai",
    "model": {"base_url": "http://x/v1", "id": "m"},
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (with_(name="Chat!"), "name: must be 1-63 lower-case"),
        (with_(version="1.0"), "version: '1.0' is not a semantic version"),
        (with_(backend="vllm"), "backend: Input should be 'llamacpp' or 'openai'"),
        (with_(model={"base_url": "http://x"}), "an openai release needs `base_url` and `id`"),
        (
            with_(backend="llamacpp", model={"path": "/a", "package": "b"}),
            "exactly one of `package` or `path`",
        ),
        (
            with_(backend="llamacpp", model={"path": "/a", "id": "x"}),
            "`base_url`/`id` are for backend openai",
        ),
        (with_(model={**BASE["model"], "sha256": "xyz"}), "model.sha256: must be 64 hexadecimal"),
        (with_(params={"temperature": 3}), "params.temperature"),
        (with_(params={"temprature": 0.1}), "params.temprature: unknown field"),
        (
            with_(prompt={"template": "no placeholder"}),
            "prompt.template: must contain the placeholder {input}",
        ),
        (with_(runtime={"n_ctx": 10}), "runtime.n_ctx"),
        (["not", "a", "mapping"], "must be a mapping"),
    ],
)
def test_invalid_specs_name_the_field(data: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(data, source="models/x.yaml")
    assert err.value.message.startswith("models/x.yaml: ")
    assert message in err.value.message


def test_version_prefix_v_is_accepted_and_normalised() -> None:
    assert parse_spec(with_(version="v2.1.0-rc.1")).version == "2.1.0-rc.1"
    with pytest.raises(SpecError, match="not a semantic version"):
        parse_spec(with_(version=1.5))  # what YAML makes of `version: 1.5`


def test_digest_is_content_based() -> None:
    a = parse_spec(BASE)
    assert a.digest() == parse_spec(dict(BASE)).digest()
    assert a.digest() != parse_spec(with_(labels={"team": "x"})).digest()
    # defaults written out or left implicit are the same content
    assert a.digest() == parse_spec(with_(params={"temperature": 0.7})).digest()


def test_yaml_round_trip(tmp_path: Path) -> None:
    spec = bundled_spec()
    path = tmp_path / "s.yaml"
    path.write_text(spec.to_yaml())
    assert load_spec(path) == spec
    assert spec.ref == "smollm2-chat@1.0.0"


def test_load_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_parse_ref() -> None:
    assert parse_ref("chat@1.2.3") == ("chat", "1.2.3")
    assert parse_ref("chat@v1.2.3") == ("chat", "1.2.3")
    assert parse_ref("production") is None
    with pytest.raises(SpecError, match="NAME@VERSION"):
        parse_ref("@1.0.0")


def test_prompt_template_applies() -> None:
    spec = parse_spec(with_(prompt={"template": "Answer briefly: {input}"}))
    assert spec.prompt.apply("why?") == "Answer briefly: why?"
    assert parse_spec(BASE).prompt.apply("why?") == "why?"
