"""Eval and load-test runs for the dashboard: the gate runs with their reports, an eval run's cases (filtered), a load-test run's HTML report."""

from __future__ import annotations

from fastapi import APIRouter

from llmship.gateway.api_common import READ_ERRORS

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=READ_ERRORS)
