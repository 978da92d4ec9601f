"""Typed settings: ``LLMSHIP_*`` environment, then ``llmship.yaml``, then defaults.

This is the one place that lists every setting; ``docs/configuration.md``
documents each of them and a test keeps the two in step.
"""

from __future__ import annotations

import getpass
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from llmship.errors import SpecError
from llmship.names import NAME_PATTERN

CONFIG_ENV = "LLMSHIP_CONFIG"
DEFAULT_CONFIG = "llmship.yaml"
ENV_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
ENV_RULE = "1 to 32 lowercase letters, digits or '-', starting with a letter (e.g. prod)"
"""``ENV_PATTERN`` in words, for error messages."""
OPTIONS = {
    "serve_host": "--host",
    "serve_port": "--port",
    "gateway_host": "--host",
    "gateway_port": "--port",
    "n_threads": "--threads",
}
"""The command-line option that overrides a setting, where it is not ``--<name>``."""


class _YamlSource(PydanticBaseSettingsSource):
    """Top-level keys of ``llmship.yaml`` that name a setting."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path):
        super().__init__(settings_cls)
        self.path = path
        self.data = _read_yaml(path)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k in self.settings_cls.model_fields}


def config_path() -> Path:
    """``$LLMSHIP_CONFIG``, else ``llmship.yaml`` in the working directory (which need not
    exist)."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def read_config(path: Path | None = None) -> tuple[Path, Any]:
    """The configuration file (``path``, else :func:`config_path`) and its parsed content,
    ``{}`` when it is empty or there is none. A file named by ``path`` or
    ``$LLMSHIP_CONFIG`` must exist; SpecError names a file it cannot read or parse.

    For the nested sections read outside ``Settings`` (``gates:``); what they hold is
    for the caller to check.
    """
    explicit = path is not None or bool(os.environ.get(CONFIG_ENV))
    path = path or config_path()
    if not path.is_file():
        if explicit:
            raise SpecError(f"{path}: no such configuration file; fix the path or unset it")
        return path, {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the configuration: {exc}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    return path, data


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the configuration must be a mapping of setting: value")
    return data


class Settings(BaseSettings):
    """Every llmship setting. Environment variables are the field names, upper-case,
    prefixed with ``LLMSHIP_`` (``home`` is ``LLMSHIP_HOME``)."""

    model_config = SettingsConfigDict(env_prefix="LLMSHIP_", extra="ignore")

    home: Path = Field(
        Path(".llmship"),
        description="State directory: the SQLite registry, logs and caches.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the registry; default SQLite at `<home>/registry.db`. "
        "PostgreSQL: `postgresql+psycopg://user:pass@host/db`.",
    )
    env: str = Field(
        "dev",
        pattern=ENV_PATTERN,
        description="Environment whose aliases commands read and move (dev, test, staging, prod).",
    )
    actor: str = Field(
        default_factory=lambda: os.environ.get("USER") or _login_name(),
        description="Who is recorded in the alias history and events (default: the login name).",
    )
    serve_host: str = Field("127.0.0.1", description="Address `llmship serve` listens on.")
    serve_port: int = Field(8000, ge=0, le=65535, description="Port `llmship serve` listens on.")
    n_threads: int | None = Field(
        None,
        ge=1,
        description="llama.cpp CPU threads of each model server, over the release's "
        "`runtime.n_threads` (default: the release's, else half the cores; under "
        "`llmship up`, half the cores shared among a release's replicas).",
    )
    replicas: int | dict[str, int] = Field(
        1,
        description="Model servers `llmship up` runs per release: a number for every "
        "release, or a mapping of NAME or NAME@VERSION to a number (others get 1).",
    )
    queue_size: int = Field(
        16, ge=0, description="Requests that may wait for a busy model; more get 429."
    )
    request_timeout: float = Field(
        300.0, gt=0, description="Seconds a request may take, waiting included; then 504."
    )
    max_request_tokens: int = Field(
        4096, ge=1, description="Largest `max_tokens` a request may ask for."
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest request body, in bytes, the gateway and model servers read; "
        "a larger one is refused with 413 as soon as it is known (Content-Length) or "
        "while it arrives.",
    )
    max_header_bytes: int = Field(
        32_768,
        ge=1024,
        description="Largest request header block, in bytes (names and values), the "
        "gateway and model servers accept; a larger one gets 431.",
    )
    gateway_host: str = Field("127.0.0.1", description="Address `llmship gateway` listens on.")
    gateway_port: int = Field(
        8080, ge=0, le=65535, description="Port `llmship gateway` listens on."
    )
    admin_token: str | None = Field(
        None,
        description="Bearer token of the gateway's admin API under `/api/v1/`; "
        "unset, the admin API answers 503.",
    )
    tokens_file: Path | None = Field(
        None,
        description="File of named API tokens with roles (`llmship tokens add`); "
        "default `<home>/tokens.yaml`.",
    )
    read_access: Literal["local", "open", "token"] = Field(
        "local",
        description="Who may read the dashboard's API (`GET /api/v1/...` for releases, "
        "rollouts, runs and feedback) without the admin token: `local` clients on a "
        "loopback address, `open` anyone who reaches the gateway, `token` nobody. "
        "Changes always need the token.",
    )
    feedback_token: Literal["optional", "required"] = Field(
        "optional",
        description="Whether `POST /feedback` must carry the answer's feedback token: "
        "`optional` checks one that is sent (a wrong one is 403), `required` also refuses "
        "a rating without one (403).",
    )
    upstream_connect_timeout: float = Field(
        5.0, gt=0, description="Seconds the gateway waits to connect to a model server."
    )
    upstream_timeout: float = Field(
        300.0,
        gt=0,
        description="Seconds the gateway waits for a model server's next bytes (read timeout).",
    )
    upstream_max_connections: int = Field(
        100, ge=1, description="Most connections the gateway keeps open to model servers."
    )
    policy_refresh_interval: float = Field(
        0.5,
        gt=0,
        description="Seconds between the gateway's reads of the traffic policy, "
        "endpoints and flags.",
    )
    endpoint_max_age: float = Field(
        30.0,
        gt=0,
        description="A model server whose last heartbeat is older than this many seconds "
        "is not routed to.",
    )
    switch_wait: float = Field(
        120.0,
        ge=0,
        description="Seconds the gateway goes on routing by the previous traffic policy while "
        "a release the new one sends requests to has no live model server (make before "
        "break); 0 switches at once.",
    )
    shadow_max_in_flight: int = Field(
        16,
        ge=0,
        description="Most shadow (mirrored) requests in flight; more are dropped and counted.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of llmship's processes."
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Format of the log lines: text (time, level, logger, message) or json "
        "(one JSON object a line, access lines with their fields and trace id).",
    )
    log_prompts: bool = Field(
        False, description="Log prompt and response text (off: only ids, sizes and timings)."
    )
    tracing: Literal["none", "console", "otlp"] | None = Field(
        None,
        description="OpenTelemetry spans of the gateway and model servers: none, console "
        "(one JSON line per span on stdout) or otlp (OTLP over HTTP). Unset: "
        "OTEL_TRACES_EXPORTER, else otlp when an OTLP endpoint is set, else none.",
    )
    tracing_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces (default: "
        "the OTEL_EXPORTER_OTLP_* variables); setting it alone turns otlp on.",
    )

    @field_validator("replicas", mode="before")
    @classmethod
    def _check_replicas(cls, value: Any) -> int | dict[str, int]:
        return _replicas(value)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.database_url is not None and "://" not in self.database_url:
            raise ValueError(
                "database_url must be a URL such as sqlite:///path or postgresql+psycopg://..."
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        explicit = os.environ.get(CONFIG_ENV)
        path = Path(explicit or DEFAULT_CONFIG)
        if explicit and not path.is_file():
            raise SpecError(f"{CONFIG_ENV}={explicit}: no such file; fix the path or unset it")
        return (init_settings, env_settings, _YamlSource(settings_cls, path))

    def replicas_of(self, ref: str) -> int:
        """How many model servers ``llmship up`` runs of the release ``ref``
        (NAME@VERSION): its own entry, else its name's, else 1."""
        if isinstance(self.replicas, int):
            return self.replicas
        name = ref.partition("@")[0]
        return self.replicas.get(ref, self.replicas.get(name, 1))

    @property
    def registry_url(self) -> str:
        """The database URL actually used."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'registry.db').resolve()}"


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


REPLICAS_RULE = "a whole number from 1 to 64, or a mapping of NAME or NAME@VERSION to one"


def _replicas(value: Any) -> int | dict[str, int]:
    """``replicas`` checked: a count from 1 to 64, or a mapping of release name or
    NAME@VERSION to one; ValueError says what to fix."""
    if isinstance(value, str) and value.strip().startswith("{"):  # from the environment
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"not a mapping ({exc.__class__.__name__}); {REPLICAS_RULE}") from exc
    if not isinstance(value, dict):
        count = _count(value)
        if count is None:
            raise ValueError(f"use {REPLICAS_RULE}")
        return count
    counts = {}
    for key, count in value.items():
        name, at, version = str(key).partition("@")
        if not re.match(NAME_PATTERN, name) or (at and not version):
            raise ValueError(f"{key!r} is not a release NAME or NAME@VERSION")
        checked = _count(count)
        if checked is None:
            raise ValueError(f"{key}: {count!r} is not a whole number from 1 to 64")
        counts[str(key)] = checked
    return counts


def _count(value: Any) -> int | None:
    """``value`` as a replica count from 1 to 64, else None."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        return None
    return value


def load_settings(**overrides: Any) -> Settings:
    """Settings from environment, config file and defaults; a clear error when invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_problem(e, overrides) for e in exc.errors())
        raise SpecError(f"invalid settings: {problems}") from exc


def _problem(error: Any, overrides: dict[str, Any]) -> str:
    """One validation error, naming where the bad value came from: the command-line
    option, the ``LLMSHIP_*`` variable or the configuration file."""
    loc = error["loc"]
    if not loc:  # a contradiction between settings (a model validator)
        return str(error["msg"]).removeprefix("Value error, ")
    name = str(loc[0])
    value = error.get("input")
    if name in overrides:
        origin = f"{OPTIONS.get(name, '--' + name.replace('_', '-'))} {value!r}"
    elif _from_environment(name):
        origin = f"LLMSHIP_{name.upper()}={value!r}"
    else:
        origin = f"{config_path()}: {'.'.join(str(p) for p in loc)}: {value!r}"
    if name == "env" and error["type"] in ("string_pattern_mismatch", "string_type"):
        return f"{origin} is not a valid environment name; use {ENV_RULE}"
    return f"{origin}: {str(error['msg']).removeprefix('Value error, ')}"


def _from_environment(name: str) -> bool:
    var = f"LLMSHIP_{name.upper()}"
    return any(key.upper() == var for key in os.environ)
