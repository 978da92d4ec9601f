"""Releases and aliases for the dashboard: the releases with their specs, a diff between two, aliases and their history."""

from __future__ import annotations

from fastapi import APIRouter

from llmship.gateway.api_common import READ_ERRORS

router = APIRouter(prefix="/api/v1", tags=["dashboard"], responses=READ_ERRORS)
