"""Feedback for the dashboard: ratings and comments, and ratings per release over time.

The time series are drawn here from each rating's and thumbs' time (the registry hands
them out oldest first, without comments): one bucket of ``bucket`` seconds after
another, only the buckets with feedback in them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from llmship.gateway.api_common import (
    READ_ERRORS,
    Page,
    PageParams,
    RecordView,
    gateway_of,
    registry_of,
    require_reader,
)
from llmship.registry import Registry

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=READ_ERRORS)

MIN_BUCKET_S = 60
MAX_BUCKET_S = 31 * 86_400


class FeedbackView(RecordView):
    """One rating or thumbs given to an answer."""

    query_id: str = Field(description="The answer's query id (its `X-Llmship-Query-Id`).")
    env: str = Field(description="The environment that answered.")
    ref: str = Field(description="The release that answered.")
    kind: str = Field(description="`rating` or `thumbs`.")
    value: int = Field(description="A rating 1-5; thumbs 1 (up) or 0 (down).")
    comment: str | None = Field(description="What the user wrote, if anything.")
    at: str = Field(description="When it was given (ISO-8601, UTC).")


class FeedbackBucket(BaseModel):
    """The feedback one release got in one bucket of time."""

    t: int = Field(description="The bucket's start, in seconds since the epoch (UTC).")
    ratings: int = Field(description="How many ratings.")
    mean_rating: float | None = Field(description="Their mean (null: none).")
    thumbs_up: int = Field(description="How many thumbs up.")
    thumbs_down: int = Field(description="How many thumbs down.")


class ReleaseFeedback(BaseModel):
    """One release's feedback: in all, and bucket by bucket."""

    ref: str = Field(description="The release.")
    ratings: int = Field(description="How many ratings in all.")
    mean_rating: float | None = Field(description="Their mean (null: none).")
    thumbs_up: int = Field(description="How many thumbs up in all.")
    thumbs_down: int = Field(description="How many thumbs down in all.")
    series: list[FeedbackBucket] = Field(
        description="The buckets with feedback in them, oldest first."
    )


class FeedbackSummaryView(BaseModel):
    """Per release, its feedback over time."""

    env: str = Field(description="The environment.")
    bucket_s: int = Field(description="Each bucket's length in seconds.")
    releases: list[ReleaseFeedback] = Field(description="Each release with feedback, by ref.")


@dataclass
class _Tally:
    ratings: int = 0
    rating_sum: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0

    def add(self, kind: str, value: int) -> None:
        if kind == "rating":
            self.ratings += 1
            self.rating_sum += value
        elif value:
            self.thumbs_up += 1
        else:
            self.thumbs_down += 1

    @property
    def mean_rating(self) -> float | None:
        return self.rating_sum / self.ratings if self.ratings else None


@dataclass
class _Release:
    total: _Tally = field(default_factory=_Tally)
    buckets: dict[int, _Tally] = field(default_factory=dict)


def summarize(
    points: Iterable[tuple[str, str, int, datetime]], bucket_s: int
) -> list[ReleaseFeedback]:
    """Per release (by ref), the feedback ``points`` (``(ref, kind, value, at)``) in all
    and in buckets of ``bucket_s`` seconds."""
    releases: dict[str, _Release] = {}
    for ref, kind, value, at in points:
        start = int(at.timestamp()) // bucket_s * bucket_s
        release = releases.setdefault(ref, _Release())
        release.total.add(kind, value)
        release.buckets.setdefault(start, _Tally()).add(kind, value)
    return [
        ReleaseFeedback(
            ref=ref,
            ratings=release.total.ratings,
            mean_rating=release.total.mean_rating,
            thumbs_up=release.total.thumbs_up,
            thumbs_down=release.total.thumbs_down,
            series=[
                FeedbackBucket(
                    t=start,
                    ratings=tally.ratings,
                    mean_rating=tally.mean_rating,
                    thumbs_up=tally.thumbs_up,
                    thumbs_down=tally.thumbs_down,
                )
                for start, tally in sorted(release.buckets.items())
            ],
        )
        for ref, release in sorted(releases.items())
    ]


def _page(
    registry: Registry,
    env: str | None,
    ref: str | None,
    kind: str | None,
    commented: bool,
    page: PageParams,
) -> Page[FeedbackView]:
    records, total = registry.page_feedback(
        env=env, ref=ref, kind=kind, commented=commented, limit=page.limit, offset=page.offset
    )
    return Page[FeedbackView](
        items=[FeedbackView.of(r) for r in records],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


def _summary(
    registry: Registry, env: str, bucket_s: int, since: datetime | None
) -> FeedbackSummaryView:
    points = registry.feedback_points(env, since=since)
    return FeedbackSummaryView(env=env, bucket_s=bucket_s, releases=summarize(points, bucket_s))


@router.get(
    "/feedback",
    response_model=Page[FeedbackView],
    summary="List feedback",
    dependencies=[Depends(require_reader)],
)
async def list_feedback(
    request: Request,
    env: str | None = Query(None, description="Only feedback on answers of this environment."),
    ref: str | None = Query(None, description="Only feedback on this release (`NAME@VERSION`)."),
    kind: Literal["rating", "thumbs"] | None = Query(None, description="Only ratings or thumbs."),
    comment: bool = Query(False, description="`true`: only feedback with a comment."),
    page: PageParams = Depends(),
) -> Page[FeedbackView]:
    """The ratings and thumbs users gave, with their comments, newest first."""
    registry = registry_of(request)
    return await asyncio.to_thread(_page, registry, env, ref, kind, comment, page)


@router.get(
    "/feedback/summary",
    response_model=FeedbackSummaryView,
    summary="Feedback per release over time",
    dependencies=[Depends(require_reader)],
)
async def feedback_summary(
    request: Request,
    env: str | None = Query(None, description="The environment (default: this gateway's)."),
    bucket: int = Query(
        3600,
        ge=MIN_BUCKET_S,
        le=MAX_BUCKET_S,
        description="Seconds per bucket of the series (60 to 31 days).",
    ),
    since: datetime | None = Query(
        None, description="Only feedback from this time on (ISO-8601; UTC when no zone)."
    ),
) -> FeedbackSummaryView:
    """Per release: how many ratings and their mean, how many thumbs up and down, in all
    and per bucket of time."""
    registry = registry_of(request)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    chosen = env or gateway_of(request).settings.env
    return await asyncio.to_thread(_summary, registry, chosen, bucket, since)
