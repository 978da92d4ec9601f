"""Feature flags: on/off, a sticky percentage of users, targeting, optional routing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from llmship.errors import InvalidRequestError
from llmship.routing.sticky import in_percent

FLAG_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Flag:
    """A feature toggle of one environment.

    A flag is on for a request when it is ``enabled``, every ``conditions``
    attribute matches, and the request's key falls in the first ``percent`` of
    sticky buckets. With ``release`` set, the requests it is on for are routed
    to that release.
    """

    name: str
    enabled: bool = False
    percent: float = 100.0
    conditions: dict[str, str] = field(default_factory=dict)
    release: str | None = None

    def validate(self) -> None:
        """Refuse a malformed flag with a message that says what to fix."""
        if not FLAG_NAME.match(self.name):
            raise InvalidRequestError(
                f"flag name {self.name!r}: use lower-case letters, digits, '_', '-' or '.', "
                "starting with a letter",
                param="name",
            )
        if not 0 <= self.percent <= 100:
            raise InvalidRequestError("percent must be between 0 and 100", param="percent")
        for attr in self.conditions:
            if not re.match(r"^[A-Za-z][A-Za-z0-9_.-]*$", attr):
                raise InvalidRequestError(
                    f"condition attribute {attr!r} is not a name", param="when"
                )

    def is_on(self, key: str | None, attrs: dict[str, str] | None = None) -> bool:
        """Whether the flag is on for a request with this stickiness key and attributes."""
        if not self.enabled:
            return False
        attrs = attrs or {}
        if any(attrs.get(k) != v for k, v in self.conditions.items()):
            return False
        if self.percent >= 100:
            return True
        if self.percent <= 0 or not key:
            return False
        return in_percent(key, f"flag:{self.name}", self.percent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "percent": self.percent,
            "conditions": dict(self.conditions),
            "release": self.release,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Flag:
        flag = cls(
            name=str(data["name"]),
            enabled=bool(data.get("enabled", False)),
            percent=float(data.get("percent", 100.0)),
            conditions={str(k): str(v) for k, v in (data.get("conditions") or {}).items()},
            release=data.get("release"),
        )
        flag.validate()
        return flag


def parse_conditions(pairs: list[str]) -> dict[str, str]:
    """``["plan=pro", "region=eu"]`` -> ``{"plan": "pro", "region": "eu"}``."""
    out = {}
    for pair in pairs:
        attr, sep, value = pair.partition("=")
        if not sep or not attr:
            raise InvalidRequestError(f"--when {pair!r}: write ATTRIBUTE=VALUE, e.g. plan=pro")
        out[attr.strip()] = value.strip()
    return out


def alternate_name(name: str) -> str:
    """``new-model`` <-> ``new_model``: the seed's toggle spells the flag both ways."""
    return name.replace("-", "_") if "-" in name else name.replace("_", "-")
