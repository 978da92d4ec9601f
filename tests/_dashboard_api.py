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


def check_read_access(registry: Registry, tmp_path: Path, urls: list[str]) -> None:
    """Each of ``urls`` reads as ``read_access`` says: ``open``, 200 without a token and
    403 with a wrong one; ``local`` (the test client is no loopback client), 401 without a
    token, 403 with a wrong one, 200 with :data:`TOKEN`."""
    wrong = {"Authorization": "Bearer wrong"}
    with client_for(registry, tmp_path, read_access="open") as client:
        for url in urls:
            assert client.get(url).status_code == 200, url
            assert client.get(url, headers=wrong).status_code == 403, url
    with client_for(registry, tmp_path, read_access="local") as client:
        for url in urls:
            assert client.get(url).status_code == 401, url
            assert client.get(url, headers=wrong).status_code == 403, url
            assert client.get(url, headers=AUTH).status_code == 200, url
