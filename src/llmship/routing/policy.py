"""The traffic policy of one environment: which releases get which requests."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from llmship.errors import InvalidRequestError

VARIANT_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
RESERVED_VARIANTS = frozenset({"stable", "canary", "preview", "shadow"})


@dataclass(frozen=True)
class Variant:
    """One arm of an A/B experiment."""

    name: str
    ref: str
    weight: float


@dataclass(frozen=True)
class Experiment:
    """An A/B experiment: users are split between variants by a sticky hash."""

    name: str
    variants: tuple[Variant, ...]

    def ranges(self) -> list[tuple[Variant, int, int]]:
        """Each variant's bucket range ``[lo, hi)``, laid out in order.

        The last variant ends at the top bucket, so raising its weight keeps
        every user it already had (its range only grows downwards).
        """
        from llmship.routing.sticky import BUCKETS

        out = []
        hi = BUCKETS
        for variant in reversed(self.variants):
            lo = max(hi - round(variant.weight * BUCKETS / 100), 0)
            out.append((variant, lo, hi))
            hi = lo
        out.reverse()
        first, _, end = out[0]
        out[0] = (first, 0, end)  # rounding leftovers go to the first (control) variant
        return out


@dataclass(frozen=True)
class TrafficPolicy:
    """Where one environment's requests go.

    ``stable`` is what the ``production`` alias points at; everything else is
    set by hand (``llmship traffic set``) or by the rollout controller.
    """

    env: str
    stable: str | None = None
    canary: str | None = None
    canary_weight: float = 0.0
    preview: str | None = None
    experiment: Experiment | None = None
    shadow: str | None = None
    shadow_percent: float = 0.0
    revision: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def releases(self) -> list[str]:
        """Every release the policy needs served, stable first, without repeats."""
        refs = [self.stable, self.canary, self.preview, self.shadow]
        if self.experiment:
            refs += [v.ref for v in self.experiment.variants]
        seen: dict[str, None] = {}
        for ref in refs:
            if ref:
                seen.setdefault(ref)
        return list(seen)

    def routed(self) -> list[str]:
        """The releases whose answers clients see: stable, a canary with a weight, the
        preview and the experiment's arms with a weight (not the shadow)."""
        refs = [self.stable, self.canary if self.canary_weight > 0 else None, self.preview]
        if self.experiment:
            refs += [v.ref for v in self.experiment.variants if v.weight > 0]
        return list(dict.fromkeys(ref for ref in refs if ref))

    def describe_change(self, new: TrafficPolicy) -> str:
        """What differs from this policy in ``new``, for logs: ``stable a@1 -> a@2``,
        ``canary a@2 at 20%``, ``no canary`` ..."""
        parts = []
        if new.stable != self.stable:
            parts.append(f"stable {self.stable or '(none)'} -> {new.stable or '(none)'}")
        if (new.canary, new.canary_weight) != (self.canary, self.canary_weight):
            parts.append(
                f"canary {new.canary} at {new.canary_weight:g}%" if new.canary else "no canary"
            )
        if new.preview != self.preview:
            parts.append(f"preview {new.preview}" if new.preview else "no preview")
        if new.experiment != self.experiment:
            exp = new.experiment
            parts.append(
                f"experiment {exp.name} ("
                + ", ".join(f"{v.name}={v.ref}:{v.weight:g}%" for v in exp.variants)
                + ")"
                if exp
                else "no experiment"
            )
        if (new.shadow, new.shadow_percent) != (self.shadow, self.shadow_percent):
            parts.append(
                f"shadow {new.shadow} at {new.shadow_percent:g}%" if new.shadow else "no shadow"
            )
        if new.revision != self.revision:
            parts.append(f"revision {self.revision} -> {new.revision}")
        return ", ".join(parts) or "unchanged"

    def weights(self) -> dict[str, float]:
        """Share of ordinary traffic (percent) per variant, for the weight gauges."""
        if self.experiment:
            return {v.name: v.weight for v in self.experiment.variants}
        if self.canary:
            return {"stable": 100.0 - self.canary_weight, "canary": self.canary_weight}
        return {"stable": 100.0}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the admin API) and storage."""
        return {
            "env": self.env,
            "stable": self.stable,
            "canary": {"release": self.canary, "weight": self.canary_weight}
            if self.canary
            else None,
            "preview": self.preview,
            "experiment": (
                {
                    "name": self.experiment.name,
                    "variants": [
                        {"name": v.name, "release": v.ref, "weight": v.weight}
                        for v in self.experiment.variants
                    ],
                }
                if self.experiment
                else None
            ),
            "shadow": (
                {"release": self.shadow, "percent": self.shadow_percent} if self.shadow else None
            ),
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficPolicy:
        """The inverse of :meth:`to_dict`; validates."""
        canary = data.get("canary") or {}
        shadow = data.get("shadow") or {}
        exp = data.get("experiment")
        experiment = None
        if exp:
            experiment = Experiment(
                name=str(exp["name"]),
                variants=tuple(
                    Variant(str(v["name"]), str(v["release"]), float(v["weight"]))
                    for v in exp.get("variants", [])
                ),
            )
        policy = cls(
            env=str(data.get("env", "")),
            stable=data.get("stable"),
            canary=canary.get("release"),
            canary_weight=float(canary.get("weight", 0.0)),
            preview=data.get("preview"),
            experiment=experiment,
            shadow=shadow.get("release"),
            shadow_percent=float(shadow.get("percent", 0.0)),
            revision=int(data.get("revision", 0)),
        )
        policy.validate()
        return policy

    def with_(self, **changes: Any) -> TrafficPolicy:
        """A validated copy with ``changes``."""
        policy = replace(self, **changes)
        policy.validate()
        return policy

    def validate(self) -> None:
        """Refuse contradictions with a message that says what to fix."""
        import re

        if not 0 <= self.canary_weight <= 100:
            raise InvalidRequestError("canary weight must be between 0 and 100", param="weight")
        if not 0 <= self.shadow_percent <= 100:
            raise InvalidRequestError("shadow percent must be between 0 and 100", param="percent")
        if self.canary and self.experiment:
            raise InvalidRequestError(
                "a canary and an experiment cannot run at once; reset one first",
                param="experiment",
            )
        if self.canary and self.canary == self.stable:
            raise InvalidRequestError(
                f"the canary {self.canary} is already the stable release", param="canary"
            )
        if self.experiment:
            variants = self.experiment.variants
            if len(variants) < 2:
                raise InvalidRequestError(
                    "an experiment needs at least two variants", param="variants"
                )
            names = [v.name for v in variants]
            if len(set(names)) != len(names):
                raise InvalidRequestError("experiment variant names must differ", param="variants")
            for v in variants:
                if not re.match(VARIANT_NAME, v.name) or v.name in RESERVED_VARIANTS:
                    raise InvalidRequestError(
                        f"variant name {v.name!r}: use letters, digits, '-' or '_', not "
                        f"{', '.join(sorted(RESERVED_VARIANTS))}",
                        param="variants",
                    )
                if v.weight < 0:
                    raise InvalidRequestError(
                        "variant weights must not be negative", param="variants"
                    )
            if abs(sum(v.weight for v in variants) - 100) > 1e-6:
                raise InvalidRequestError(
                    f"experiment weights add up to {sum(v.weight for v in variants):g}, not 100",
                    param="variants",
                )
