"""Wire models of the gateway's own endpoints: feedback, flags, models and the admin API.

The OpenAI endpoints and ``/predict`` are forwarded as raw bytes; their schemas
are in ``llmship.wire``, shared with the model server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmship.flags import Flag
from llmship.registry.records import NO_REASON
from llmship.routing.policy import PolicyDocument, PolicyFields, TrafficPolicy
from llmship.wire import PredictResponse


class _Body(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


# -- public ---------------------------------------------------------------------------


class FeedbackRequest(_Body):
    """`POST /feedback`: a rating, a thumbs, or both, on one answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["rating"], "properties": {"rating": {"type": "integer"}}},
                {"required": ["thumbs"], "properties": {"thumbs": {"type": "string"}}},
            ]
        }
    )

    query_id: str = Field(
        min_length=1,
        max_length=128,
        description="The answer's query id, issued by the gateway: its `X-Llmship-Query-Id` "
        "header (or `query_id` of /predict). A client's own `X-Request-ID` is not one.",
    )
    rating: int | None = Field(
        None, ge=1, le=5, strict=True, description="A rating from 1 (bad) to 5 (good)."
    )
    thumbs: Literal["up", "down"] | None = Field(None, description="Thumbs `up` or `down`.")
    comment: str | None = Field(
        None, max_length=2000, description="Free text, at most 2000 characters."
    )
    feedback_token: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="The answer's feedback token (its `X-Llmship-Feedback-Token` header, or "
        "`feedback_token` of /predict): proves the rating comes from the client that got "
        "the answer. A wrong one is 403; whether one is required is the `feedback_token` "
        "setting.",
    )
    user: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="Who rates (default: the user the query was asked for, `X-User-Id` or "
        "`user`). One rating and one thumbs per query and user: a second replaces the first.",
    )

    @model_validator(mode="after")
    def _something(self) -> FeedbackRequest:
        if self.rating is None and self.thumbs is None:
            raise ValueError("send `rating` (1 to 5) or `thumbs` (up or down), or both")
        return self


class GatewayPredictResponse(PredictResponse):
    """`POST /predict` through the gateway: the model server's answer, with what rating
    it takes."""

    feedback_token: str | None = Field(
        None,
        description="Send it with a rating of this answer (`POST /feedback`); also the "
        "`X-Llmship-Feedback-Token` header. Absent while the gateway cannot read its key "
        "from the registry.",
    )


class FeedbackResponse(BaseModel):
    status: Literal["ok"] = Field("ok", description="Always `ok`: the feedback is stored.")
    query_id: str = Field(description="The query the feedback is about.")
    version: str = Field(description="The release that gave the answer, NAME@VERSION.")


class FlagState(BaseModel):
    name: str = Field(description="The flag's name.")
    on: bool = Field(description="Whether the flag is on for this caller (user key, attributes).")


class GatewayModelCard(BaseModel):
    id: str = Field(description="Release name: use it as `model`.")
    object: Literal["model"] = Field("model", description="Always `model`.")
    created: int = Field(description="Unix time the gateway started.")
    owned_by: str = Field("llmship", description="Always `llmship`.")
    version: str = Field(description="NAME@VERSION of this name's first release in the policy.")
    versions: list[str] = Field(description="Every release of this name the policy routes to.")


class GatewayModelList(BaseModel):
    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[GatewayModelCard] = Field(description="The releases of the traffic policy, by name.")


# -- admin: flags ---------------------------------------------------------------------


class FlagBody(_Body):
    """`PUT /api/v1/flags/{name}`: the whole flag (fields left out take their defaults)."""

    name: str | None = Field(None, description="Optional; must equal the name in the path.")
    enabled: bool = Field(False, description="Master switch: off means off for everyone.")
    percent: float = Field(
        100.0, ge=0, le=100, description="Sticky share of user keys the flag is on for."
    )
    conditions: dict[str, str] = Field(
        default_factory=dict,
        description="Attributes a request must carry (`X-Llmship-Attr-<name>: value`).",
    )
    release: str | None = Field(
        None, description="NAME@VERSION the requests it is on for are routed to."
    )


class FlagView(BaseModel):
    name: str = Field(description="The flag's name.")
    enabled: bool = Field(description="Master switch.")
    percent: float = Field(description="Sticky share of user keys the flag is on for.")
    conditions: dict[str, str] = Field(description="Attributes a request must carry.")
    release: str | None = Field(description="Release its requests are routed to, if any.")

    @classmethod
    def of(cls, flag: Flag) -> FlagView:
        return cls(**flag.to_dict())


class FlagList(BaseModel):
    data: list[FlagView] = Field(description="Every flag of the environment, by name.")


class ToggleResponse(BaseModel):
    status: bool = Field(description="The flag's new `enabled` value.")
    name: str = Field(description="The flag that was flipped.")


class Deleted(BaseModel):
    status: Literal["deleted"] = Field("deleted", description="Always `deleted`.")
    name: str = Field(description="What was deleted.")


# -- admin: traffic -------------------------------------------------------------------


# The policy's fields are the policy's own JSON (llmship.routing.PolicyFields), defined
# once beside TrafficPolicy; TrafficUpdate.policy(env) gives the policy it asks for.


class TrafficUpdate(PolicyFields):
    """`PUT /api/v1/traffic`: the whole policy but `stable` (the `production` alias)."""

    reason: str | None = Field(
        None, description=f"Why: recorded with the change (default: {NO_REASON!r})."
    )
    expected_revision: int | None = Field(
        None, description="Refuse (409) unless the stored revision is this one."
    )
    force: bool = Field(
        False,
        description="Give a release all of the traffic (or more than `guard_above` percent) "
        "even without the passing gates `llmship.yaml` requires (a `gate.forced` event; "
        "needs a `reason`; role admin).",
    )


class PromoteRequest(_Body):
    reason: str | None = Field(
        None,
        description=f"Why: recorded in the alias history (default: {NO_REASON!r}); "
        "`force` needs one.",
    )
    force: bool = Field(
        False,
        description="Promote even without the passing gates `llmship.yaml` requires "
        "(recorded as a `gate.forced` event; the reason becomes `[forced] ...`).",
    )


class TrafficView(PolicyDocument):
    """The policy of the environment, with where each release is served."""

    # A response: every field is always there (required in the schema), none refused.
    model_config = ConfigDict(extra="ignore", json_schema_serialization_defaults_required=True)

    weights: dict[str, float] = Field(description="Percent of ordinary traffic per variant.")
    endpoints: dict[str, str | None] = Field(
        description="Each release of the policy and the URL of its newest live model server "
        "(or null)."
    )
    replicas: dict[str, list[str]] = Field(
        description="Each release of the policy and the URLs of all its live model servers, "
        "newest heartbeat first (empty when none is live)."
    )

    @classmethod
    def of(cls, policy: TrafficPolicy, endpoints: Mapping[str, Sequence[str]]) -> TrafficView:
        """The view of ``policy`` with ``endpoints`` (release -> URLs, newest first)."""
        refs = policy.releases()
        return cls(
            **policy.to_dict(),
            weights=policy.weights(),
            endpoints={ref: next(iter(endpoints.get(ref, ())), None) for ref in refs},
            replicas={ref: list(endpoints.get(ref, ())) for ref in refs},
        )
