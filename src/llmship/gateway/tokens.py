"""Named API tokens with roles: who is calling the admin API, and what they may do.

A token file (the ``tokens_file`` setting, ``<home>/tokens.yaml`` by default, written
by ``llmship tokens add``) holds one entry per person or robot: a name, a role and the
SHA-256 of the token (the token itself is shown once, when it is made)::

    tokens:
      - {name: alice, role: operator, sha256: 3a7bd3e2...}
      - {name: grafana, role: read, sha256: 9f86d081...}

Roles, each allowing what the one before it does: ``read`` (every ``GET``), ``operator``
(rollout actions, traffic, flags, toggles, alerts), ``admin`` (also ``force`` past the
gates). The ``admin_token`` setting stays the one token of role ``admin``, named
``admin-api``. The file is read again when it changes, so a token added or removed
takes effect without a restart.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmship.errors import SpecError
from llmship.names import NAME_PATTERN
from llmship.settings import Settings

ADMIN_TOKEN_NAME = "admin-api"
"""Who the ``admin_token`` setting's token is recorded as."""


class Role(enum.IntEnum):
    """What a token may do; a higher role may do everything a lower one may."""

    READ = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            known = ", ".join(r.label for r in cls)
            raise SpecError(f"unknown role {text!r}: one of {known}") from None


@dataclass(frozen=True)
class Identity:
    """Who presented a token: the token's name and role."""

    name: str
    role: Role


@dataclass(frozen=True)
class TokenEntry:
    """One named token as the file keeps it (the token's hash, never the token)."""

    name: str
    role: Role
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role.label, "sha256": self.sha256}


def token_file(settings: Settings) -> Path:
    """Where the named tokens are kept: the ``tokens_file`` setting, else
    ``<home>/tokens.yaml``."""
    return settings.tokens_file or settings.home / "tokens.yaml"


def digest(token: str) -> str:
    """The SHA-256 of a token, as the file keeps it."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def read_entries(path: Path) -> list[TokenEntry]:
    """The entries of a token file (none when it does not exist); SpecError names a
    bad one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the token file: {exc.strerror}") from None
    try:
        data: Any = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    rows = data.get("tokens") if isinstance(data, dict) else None
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise SpecError(f"{path}: tokens: must be a list of {{name, role, sha256}}")
    entries = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not {"name", "role", "sha256"} <= set(row):
            raise SpecError(f"{path}: tokens[{i}]: needs name, role and sha256")
        sha = str(row["sha256"]).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise SpecError(f"{path}: tokens[{i}].sha256: not a SHA-256 in hex")
        entries.append(TokenEntry(check_name(str(row["name"])), Role.parse(str(row["role"])), sha))
    return entries


def write_entries(path: Path, entries: list[TokenEntry]) -> None:
    """Write the token file, readable by its owner only (also when it existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump({"tokens": [e.to_dict() for e in entries]}, out, sort_keys=False)


def check_name(name: str) -> str:
    """A token's name: a name as releases have them (lowercase, digits, ``.-_``)."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise SpecError(
            f"token name {name!r}: use lowercase letters, digits, '.', '-' and '_' "
            "(it is what changes are recorded as)"
        )
    return name


class TokenBook:
    """The tokens a gateway accepts: the ``admin_token`` setting and the token file,
    read again whenever the file changes."""

    def __init__(self, admin_token: str | None, path: Path | None) -> None:
        self._admin = admin_token or None
        self._path = path
        self._lock = threading.Lock()
        self._seen: tuple[float, int] | None = None
        self._entries: list[TokenEntry] = []

    @property
    def configured(self) -> bool:
        """Whether any token is accepted (else the admin API is off)."""
        return self._admin is not None or bool(self._current())

    def identify(self, token: str) -> Identity | None:
        """Whose ``token`` it is; None for a token no one has. Every entry is compared,
        in constant time, whichever matches."""
        found: Identity | None = None
        if self._admin is not None and hmac.compare_digest(token.encode(), self._admin.encode()):
            found = Identity(ADMIN_TOKEN_NAME, Role.ADMIN)
        presented = digest(token)
        for entry in self._current():
            if hmac.compare_digest(presented, entry.sha256) and found is None:
                found = Identity(entry.name, entry.role)
        return found

    def _current(self) -> list[TokenEntry]:
        if self._path is None:
            return []
        try:
            stat = self._path.stat()
        except OSError:
            return []
        stamp = (stat.st_mtime, stat.st_size)
        with self._lock:
            if stamp != self._seen:
                self._entries = read_entries(self._path)
                self._seen = stamp
            return self._entries
