"""Feature flags through the gateway: public evaluation, the admin API, the snapshot's
lookup."""

from __future__ import annotations

from _gateway import (
    ADMIN,
    OTHER,
    STABLE,
    Rig,
)
from fakes_gateway import FakeStore
from llmship.flags import Flag
from llmship.gateway.state import Snapshot

# -- flags ----------------------------------------------------------------------------------------


def test_public_flag_evaluation(rig: Rig) -> None:
    rig.store.flags["new_model"] = Flag("new_model", enabled=True, percent=50)
    rig.store.flags["pro"] = Flag("pro", enabled=True, conditions={"plan": "pro"})
    rig.gateway.state.refresh()
    ons = {
        rig.client.get("/flags/new_model", headers={"X-User-Id": f"u{n}"}).json()["on"]
        for n in range(30)
    }
    assert ons == {True, False}
    user = {"X-User-Id": "u1"}
    first = rig.client.get("/flags/new_model", headers=user).json()
    assert rig.client.get("/flags/new-model", headers=user).json() == first  # either spelling
    assert rig.client.get("/flags/pro").json() == {"name": "pro", "on": False}
    pro = rig.client.get("/flags/pro", headers={"X-Llmship-Attr-plan": "pro"}).json()
    assert pro == {"name": "pro", "on": True}
    assert rig.client.get("/flags/unknown").status_code == 404


def test_the_seeds_toggle(rig: Rig) -> None:
    r = rig.client.post("/api/v1/toggle/new-model", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"status": True, "name": "new-model"}
    for _ in range(2):  # a GET reads, and changes nothing
        r = rig.client.get("/api/v1/toggle/new-model", headers=ADMIN)
        assert r.json() == {"status": True, "name": "new-model"}
    r = rig.client.post("/api/v1/toggle/new-model", headers=ADMIN)
    assert r.json() == {"status": False, "name": "new-model"}
    r = rig.client.get("/api/v1/toggle/nothing-here", headers=ADMIN)
    assert r.status_code == 404 and "POST /api/v1/toggle/nothing-here" in r.text
    rig.store.flags.clear()
    rig.store.flags["new_model"] = Flag("new_model", enabled=False)
    r = rig.client.post("/api/v1/toggle/new-model", headers=ADMIN)
    assert r.json() == {"status": True, "name": "new_model"}  # flips the existing flag
    assert rig.client.get("/flags/new_model").json()["on"] is True  # picked up at once
    assert rig.client.post("/api/v1/toggle/Bad Name", headers=ADMIN).status_code == 400


def test_flags_admin_api(rig: Rig) -> None:
    body = {"enabled": True, "percent": 25, "conditions": {"plan": "pro"}, "release": OTHER}
    r = rig.client.put("/api/v1/flags/beta", json=body, headers=ADMIN)
    assert r.status_code == 200
    assert r.json() == {"name": "beta", **body, "percent": 25.0}
    listed = rig.client.get("/api/v1/flags", headers=ADMIN).json()["data"]
    assert [f["name"] for f in listed] == ["beta"]
    bad = [
        ({"percent": 150}, 400),
        ({"enabled": "maybe"}, 400),
        ({"name": "other"}, 400),
        ({"release": "nope@1.0.0"}, 404),
        ({"colour": "red"}, 400),
    ]
    for wrong, status in bad:
        r = rig.client.put("/api/v1/flags/beta", json=wrong, headers=ADMIN)
        assert r.status_code == status, (wrong, r.text)
        assert "error" in r.json()
    assert rig.client.delete("/api/v1/flags/beta", headers=ADMIN).json() == {
        "status": "deleted",
        "name": "beta",
    }
    assert rig.client.delete("/api/v1/flags/beta", headers=ADMIN).status_code == 404


def test_snapshot_flag_lookup_by_either_spelling() -> None:
    policy = FakeStore([STABLE], production=STABLE).get_traffic("dev")
    snap = Snapshot(policy, {}, {"new_model": Flag("new_model")}, loaded_at=0.0)
    assert snap.flag("new-model") is snap.flag("new_model") is not None
    assert snap.flag("old-model") is None
