"""An environment at a glance for the dashboard: the environments, one environment's production, running rollout and traffic split, and the live per-version figures."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from llmship.gateway.api_common import READ_ERRORS, actor, require_operator

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=READ_ERRORS)


class WhoAmI(BaseModel):
    """Who the admin token makes the caller."""

    actor: str = Field(description="Who changes are recorded as (`X-Llmship-Actor`, else `admin-api`).")
    role: str = Field(description="`admin`: the admin token may read and act.")


@router.get(
    "/whoami",
    response_model=WhoAmI,
    summary="Check the admin token",
    dependencies=[Depends(require_operator)],
)
async def whoami(request: Request) -> WhoAmI:
    """200 with the admin token; 401 without one, 403 with a wrong one. The dashboard asks
    this when a token is entered."""
    return WhoAmI(actor=actor(request), role="admin")
