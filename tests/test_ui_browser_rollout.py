"""A canary watched and aborted from the dashboard, in a real browser (chromium, headless),
with the real model: ``llmship up`` in a fresh copy of the project, a candidate release
with another system prompt, a canary of several weights under steady client traffic.

The rollout's page shows the weights change step by step without a reload; without the
admin token it is read-only and says so; a wrong token is called wrong; signed in, a
click on Abort (with a reason) puts traffic back on stable, and the page shows the phase
and who aborted. An unknown rollout is a 404 page. Screenshots of the overview and the
rollout at both widths land in ``artifacts/screenshots/`` (see ``tests/_browser.py``).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from _browser import shoot, sign_in
from _journey import Shell, Traffic, free_port, project, rollout_status, stack, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytest_plugins = ["_browser_fixtures"]  # the fixtures browser and page
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("journeys")]
"""With the journeys, on one worker: each runs several model servers."""

STABLE = "smollm2-chat@1.0.0"
CANDIDATE = "smollm2-chat@1.1.0"
CONCISE = "s/system: You are a helpful assistant./system: You are a concise assistant./"
"""The README's edit that makes 1.1.0: another system prompt."""
REASON = "too terse for our users"

CANARY = """\
cat > rollouts/ui-canary.yaml <<'EOF'
name: ui-canary
strategy:
  canary:
    steps:
      - setWeight: 20
      - pause: {duration: 8s}
      - setWeight: 50
      - pause: {duration: 8s}
      - setWeight: 80
      - pause: {}
EOF"""
"""Three weights 8 s apart, then a wait for a person: time to watch each on the page."""

WEIGHT = """ref => {
  const el = document.querySelector(`[data-testid=weights] [data-ref="${ref}"]`);
  return el ? Number(el.dataset.weight) : null;
}"""


def register_candidate(shell: Shell) -> None:
    """Write 1.1.0 from the bundled spec with ``sed`` (another system prompt) and
    register it, as the README does."""
    seds = f"-e 's/^version: 1.0.0/version: 1.1.0/' -e '{CONCISE}'"
    shell.run(f"grep -v '^#' models/smollm2-chat-1.0.0.yaml | sed {seds} > models/1.1.0.yaml")
    assert (
        f"registered {CANDIDATE}" in shell.run("llmship models register models/1.1.0.yaml").stdout
    )


def watch_weights(tab: Page, until: int, timeout: float) -> list[int | None]:
    """The candidate's weight on the page, polled until it is ``until``: each distinct
    value in the order seen (None while the bar has no segment for it)."""
    seen: list[int | None] = []

    def reached() -> bool:
        weight = tab.evaluate(WEIGHT, CANDIDATE)
        if not seen or seen[-1] != weight:
            seen.append(weight)
        return bool(weight == until)

    deadline = time.monotonic() + timeout
    while not reached():
        assert time.monotonic() < deadline, f"the page never showed {until}% (saw {seen})"
        tab.wait_for_timeout(200)
    return seen


def action(tab: Page, name: str) -> Locator:
    """The ``<div class="action">`` of the button ``name`` (its button and ``.why``)."""
    button = tab.get_by_role("button", name=name, exact=True)
    return tab.locator("div.action").filter(has=button)


def read_only(tab: Page) -> None:
    """The page without a token: it says Read-only, and every action button is disabled
    and says why."""
    from playwright.sync_api import expect

    expect(tab.locator("#access")).to_have_text("Read-only")
    for name in ("Promote", "Pause", "Resume", "Abort", "Retry", "Undo"):
        box = action(tab, name)
        expect(box.get_by_role("button", name=name, exact=True)).to_be_disabled()
        expect(box.locator(".why")).to_have_text("Sign in with the admin token to act")


def overview(tab: Page, rollout: int) -> None:
    """The overview (from the nav) shows production, the canary's split and the live
    charts, and links to the rollout, which is followed back."""
    from playwright.sync_api import expect

    tab.locator("nav").get_by_role("link", name="Overview").click()
    expect(tab.get_by_test_id("production")).to_contain_text(STABLE)
    wait_for(lambda: tab.evaluate(WEIGHT, CANDIDATE) == 80, "the overview's split at 80%", 15)
    expect(tab.get_by_test_id("live-charts")).to_be_visible()
    shoot(tab, "overview-canary")
    tab.locator(f'main a[href^="/ui/rollouts/{rollout}"]').first.click()
    expect(tab.locator("h1")).to_have_text("Rollout ui-canary")


def sign_in_after_a_wrong_token(tab: Page, secret: str) -> None:
    """A wrong token first, which the dialog calls wrong; then ``secret``: the header
    names who is signed in and Abort is enabled."""
    from playwright.sync_api import expect

    sign_in(tab, "not-the-admin-token")
    expect(tab.locator("#token-error")).to_be_visible()
    expect(tab.locator("#token-error")).to_contain_text("wrong")
    tab.get_by_label("Token", exact=True).fill(secret)
    tab.get_by_role("button", name="Use this token").click()
    expect(tab.locator("#access")).to_have_text("admin-api (admin)")
    expect(action(tab, "Abort").get_by_role("button")).to_be_enabled()


def abort(tab: Page, reason: str) -> float:
    """Abort, the reason, Confirm abort; seconds until the page showed phase Aborted."""
    from playwright.sync_api import expect

    action(tab, "Abort").get_by_role("button").click()
    tab.get_by_label("Reason", exact=True).fill(reason)
    tab.get_by_role("button", name="Confirm abort").click()
    clicked = time.monotonic()
    phase = tab.get_by_test_id("rollout-phase")
    expect(phase).to_have_text(re.compile("aborted", re.I), timeout=30_000)
    return time.monotonic() - clicked


@pytest.mark.timeout(600)
def test_a_canary_watched_then_aborted_from_the_page(tmp_path: Path, page: Page) -> None:
    from playwright.sync_api import expect

    started = time.monotonic()
    shell = Shell(project(tmp_path), free_port())
    with stack(shell), Traffic(shell.url, clients=1, every=0.5) as traffic:
        # Given the stack serving 1.0.0 under light steady traffic, and 1.1.0 registered
        secret = (shell.cwd / ".llmship" / "admin-token").read_text().strip()
        register_candidate(shell)
        shell.run(CANARY)

        # When a canary of 20%, 50%, 80% starts and a person opens its page
        shell.run(f"llmship rollout start rollouts/ui-canary.yaml --candidate {CANDIDATE}")
        rollout = rollout_status(shell)["id"]
        opened = page.goto(f"{shell.url}/ui/rollouts/{rollout}")
        assert opened is not None and opened.status == 200
        expect(page.locator("h1")).to_have_text("Rollout ui-canary")
        assert page.title() == "Rollout ui-canary · llmship"
        page.evaluate("window.sameDocument = true")  # gone if the page reloads

        # Then the page shows the weights change step by step, without a reload
        seen = watch_weights(page, 80, timeout=240)
        stepped = [w for w in seen if w]
        assert stepped == [20, 50, 80], seen
        assert page.evaluate("window.sameDocument === true"), "the page reloaded"
        expect(page.get_by_test_id("rollout-phase")).to_have_text(re.compile("paused", re.I))
        expect(page.locator('[data-testid=steps] li[aria-current="step"]')).to_have_count(1)
        watched = time.monotonic()

        # and, read-only without the token, says so: the buttons are disabled and say why
        read_only(page)
        shoot(page, "rollout-canary")

        # and the overview shows the running canary and its split
        overview(page, rollout)

        # When the person signs in, first with a wrong token (the page says it is wrong)
        sign_in_after_a_wrong_token(page, secret)
        # and aborts the canary, with a reason
        took = abort(page, REASON)

        # Then the page shows the abort and who did it
        expect(page.get_by_test_id("timeline")).to_contain_text("admin-api")
        expect(page.locator("main")).to_contain_text(REASON)
        promote = action(page, "Promote")
        expect(promote.get_by_role("button")).to_be_disabled()
        detail = httpx.get(f"{shell.url}/api/v1/rollouts/{rollout}", timeout=10).json()
        why = next(a["reason"] for a in detail["actions"] if a["action"] == "promote")
        expect(promote.locator(".why")).to_have_text(why)  # the API's reason, in words
        shoot(page, "rollout-aborted")

        # and traffic is back on stable: the gateway answers from 1.0.0 only
        status = rollout_status(shell)
        assert status["phase"] == "Aborted", status
        assert (status["weights"] or {}).get(CANDIDATE, 0) == 0, status["weights"]
        wait_for(lambda: page.evaluate(WEIGHT, CANDIDATE) in (None, 0), "the split on stable", 15)
        back = time.monotonic()
        wait_for(lambda: traffic.versions(since=back) == {STABLE}, "clients to get 1.0.0", 30)
        answers = [
            httpx.post(
                f"{shell.url}/predict", json={"prompt": "Hi", "max_new_tokens": 4}, timeout=60
            )
            for _ in range(5)
        ]
        assert {a.headers["x-llmship-version"] for a in answers} == {STABLE}
        traffic.stop()

        # and an unknown rollout is a 404 page
        missing = page.goto(f"{shell.url}/ui/rollouts/999999")
        assert missing is not None and missing.status == 404
        expect(page.locator("h1")).to_have_text("404: not found")
    traffic.assert_no_errors()
    print(
        f"\nbrowser canary: {time.monotonic() - started:.0f}s; weights seen {seen} "
        f"(at 80% after {watched - started:.0f}s); abort shown {took:.1f}s "
        f"after the click; {len(traffic.snapshot())} requests"
    )
