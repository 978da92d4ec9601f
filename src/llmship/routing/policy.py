"""The traffic policy of one environment: which releases get which requests.

The policy's shape is defined here once: :class:`TrafficPolicy` (what routing and
the controller use) and its JSON document (:class:`PolicyFields`, the per-strategy
part, and :class:`PolicyDocument`), which the registry stores and the admin API
takes and returns. A new way to split traffic adds its field to both, here, and
its conversion in :meth:`PolicyFields.of` and :meth:`PolicyFields.policy`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
        """Plain data for JSON (the admin API) and storage: :class:`PolicyDocument`."""
        return PolicyDocument.from_policy(self).model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficPolicy:
        """The inverse of :meth:`to_dict`; validates (a pydantic ValidationError, a
        ValueError, for a malformed document; InvalidRequestError for a contradiction)."""
        doc = PolicyDocument.model_validate(data)
        return doc.policy(doc.env, stable=doc.stable, revision=doc.revision)

    def summary(self) -> str:
        """One line: where the traffic goes, e.g. ``stable a@1, canary b@2 20%``."""
        parts = [f"stable {self.stable or '(none)'}"]
        if self.canary:
            parts.append(f"canary {self.canary} {self.canary_weight:g}%")
        if self.experiment:
            arms = ", ".join(f"{v.name}={v.ref} {v.weight:g}%" for v in self.experiment.variants)
            parts.append(f"experiment {self.experiment.name} ({arms})")
        if self.preview:
            parts.append(f"preview {self.preview}")
        if self.shadow:
            parts.append(f"shadow {self.shadow} {self.shadow_percent:g}%")
        return ", ".join(parts)

    def map_refs(self, resolve: Callable[[str, str], str]) -> TrafficPolicy:
        """This policy with every release it names (but ``stable``) replaced by
        ``resolve(ref, role)``; the role is ``canary``, ``preview``, ``shadow`` or
        ``variant NAME``, for messages."""

        def ref(value: str | None, role: str) -> str | None:
            return resolve(value, role) if value else None

        experiment = self.experiment
        if experiment is not None:
            experiment = Experiment(
                name=experiment.name,
                variants=tuple(
                    Variant(v.name, resolve(v.ref, f"variant {v.name}"), v.weight)
                    for v in experiment.variants
                ),
            )
        return replace(
            self,
            canary=ref(self.canary, "canary"),
            preview=ref(self.preview, "preview"),
            shadow=ref(self.shadow, "shadow"),
            experiment=experiment,
        )

    def without(self, ref: str) -> TrafficPolicy:
        """This policy with ``ref`` in no role: no canary (weight 0), preview,
        experiment or shadow of it; stable stays."""
        changed = self
        if changed.canary == ref:
            changed = replace(changed, canary=None, canary_weight=0.0)
        if changed.preview == ref:
            changed = replace(changed, preview=None)
        if changed.shadow == ref:
            changed = replace(changed, shadow=None, shadow_percent=0.0)
        if changed.experiment and any(v.ref == ref for v in changed.experiment.variants):
            changed = replace(changed, experiment=None)
        return changed

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


# -- the policy as JSON ------------------------------------------------------------------


class _Shape(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class CanarySpec(_Shape):
    release: str = Field(description="NAME@VERSION of the canary.")
    weight: float = Field(ge=0, le=100, description="Percent of ordinary traffic it gets.")


class VariantSpec(_Shape):
    name: str = Field(description="Variant name (not stable, canary, preview or shadow).")
    release: str = Field(description="NAME@VERSION this variant is served by.")
    weight: float = Field(ge=0, le=100, description="Percent of users; the weights add up to 100.")


class ExperimentSpec(_Shape):
    name: str = Field(min_length=1, description="Experiment name; salts the sticky hash.")
    variants: list[VariantSpec] = Field(min_length=2, description="Two or more variants.")


class ShadowSpec(_Shape):
    release: str = Field(description="NAME@VERSION that gets mirrored requests.")
    percent: float = Field(ge=0, le=100, description="Percent of requests mirrored.")


class PolicyFields(_Shape):
    """The per-strategy part of a policy as JSON: what the registry stores (with
    ``env``) and the admin API takes (``PUT /api/v1/traffic``) and shows."""

    canary: CanarySpec | None = Field(None, description="A weighted canary, or none.")
    preview: str | None = Field(
        None, description="Blue-green preview: answers requests with `X-Llmship-Variant: preview`."
    )
    experiment: ExperimentSpec | None = Field(None, description="A sticky A/B experiment.")
    shadow: ShadowSpec | None = Field(None, description="Mirror a share of requests here.")

    @classmethod
    def fields_of(cls, policy: TrafficPolicy) -> dict[str, Any]:
        """The per-strategy fields of ``policy``, as keyword arguments of this model."""
        experiment = policy.experiment
        return {
            "canary": CanarySpec(release=policy.canary, weight=policy.canary_weight)
            if policy.canary
            else None,
            "preview": policy.preview,
            "experiment": ExperimentSpec(
                name=experiment.name,
                variants=[
                    VariantSpec(name=v.name, release=v.ref, weight=v.weight)
                    for v in experiment.variants
                ],
            )
            if experiment
            else None,
            "shadow": ShadowSpec(release=policy.shadow, percent=policy.shadow_percent)
            if policy.shadow
            else None,
        }

    def policy(self, env: str, *, stable: str | None = None, revision: int = 0) -> TrafficPolicy:
        """The validated :class:`TrafficPolicy` these fields describe."""
        experiment = self.experiment
        policy = TrafficPolicy(
            env=env,
            stable=stable,
            canary=self.canary.release if self.canary else None,
            canary_weight=self.canary.weight if self.canary else 0.0,
            preview=self.preview,
            experiment=Experiment(
                name=experiment.name,
                variants=tuple(Variant(v.name, v.release, v.weight) for v in experiment.variants),
            )
            if experiment
            else None,
            shadow=self.shadow.release if self.shadow else None,
            shadow_percent=self.shadow.percent if self.shadow else 0.0,
            revision=revision,
        )
        policy.validate()
        return policy


class _Where(_Shape):
    env: str = Field("", description="The environment.")
    stable: str | None = Field(None, description="Where the `production` alias points.")


class PolicyDocument(PolicyFields, _Where):
    """The whole policy as JSON (``TrafficPolicy.to_dict``): ``env``, ``stable``, the
    per-strategy fields and ``revision``, in that order."""

    revision: int = Field(0, description="Grows by one with every change.")

    @classmethod
    def from_policy(cls, policy: TrafficPolicy) -> PolicyDocument:
        """The document of ``policy``."""
        return cls(
            env=policy.env,
            stable=policy.stable,
            revision=policy.revision,
            **PolicyFields.fields_of(policy),
        )
