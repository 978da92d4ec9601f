"""Feedback for the dashboard: ratings and comments, and ratings per release over time."""

from __future__ import annotations

from fastapi import APIRouter

from llmship.gateway.api_common import READ_ERRORS

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=READ_ERRORS)
