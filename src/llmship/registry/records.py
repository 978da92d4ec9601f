"""What the registry hands out: frozen records, never database rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmship.release.spec import ReleaseSpec


@dataclass(frozen=True)
class ReleaseRecord:
    """A registered release: the immutable spec and who registered it when."""

    id: int
    spec: ReleaseSpec
    digest: str
    """sha256 of the spec's canonical JSON (``ReleaseSpec.digest()``)."""
    created_at: datetime
    created_by: str

    @property
    def name(self) -> str:
        """The release name."""
        return self.spec.name

    @property
    def version(self) -> str:
        """The semantic version."""
        return self.spec.version

    @property
    def backend(self) -> str:
        """``llamacpp`` or ``openai``."""
        return self.spec.backend

    @property
    def ref(self) -> str:
        """``name@version``."""
        return self.spec.ref


@dataclass(frozen=True)
class AliasRecord:
    """Where one alias of one environment points now."""

    env: str
    alias: str
    ref: str
    """``name@version`` of the release the alias points at."""
    release_id: int
    updated_at: datetime


@dataclass(frozen=True)
class AliasMove:
    """One entry of an alias's append-only history."""

    id: int
    env: str
    alias: str
    from_ref: str | None
    """Where the alias pointed before; None for its first move."""
    to_ref: str
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Event:
    """A state change: who did what (``kind``) to which ``subject``, when."""

    id: int
    at: datetime
    actor: str
    kind: str
    subject: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)
