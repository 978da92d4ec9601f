"""Rollouts for the dashboard: list, one rollout with its steps and analysis, and the actions (promote, pause, resume, abort, retry, undo) as intents for the controller."""

from __future__ import annotations

from fastapi import APIRouter

from llmship.gateway.api_common import READ_ERRORS

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=READ_ERRORS)
