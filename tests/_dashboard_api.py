"""A gateway over a real registry for the dashboard API's tests (``tests/test_api_*``)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from llmship.gateway import create_app
from llmship.registry import Registry
from llmship.settings import Settings

TOKEN = "dashboard-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client_for(registry: Registry, tmp_path: Path, **settings: Any) -> TestClient:
    """A test client of a gateway of env dev over ``registry``: reads open (override with
    ``read_access=``), the admin token :data:`TOKEN`, no background refresh."""
    values: dict[str, Any] = {
        "home": tmp_path,
        "env": "dev",
        "admin_token": TOKEN,
        "read_access": "open",
        "policy_refresh_interval": 3600,
    }
    values.update(settings)
    return TestClient(create_app(registry, Settings(**values), rng=random.Random(0)))
