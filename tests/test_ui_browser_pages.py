"""The dashboard's pages in a real browser (chromium, headless).

First the shell over a gateway with an empty registry (no model; seconds): read-only
until signed in, a wrong token called wrong, a path or id that is no page a 404 page.
Then what a user's commands leave behind, with the real model: ``llmship up`` in a fresh
copy of the project, a second release, ``llmship eval`` on a golden set where one case's
assertion fails, answers rated through the gateway; the eval's page shows the failing
case and filters to it, and the releases, a release, the diff and the feedback render.
Screenshots at both widths land in ``artifacts/screenshots/`` (see ``tests/_browser.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from _browser import shoot, sign_in
from _journey import Shell, free_port, project, stack
from _procs import GatewayProcess

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytest_plugins = ["_browser_fixtures"]  # the fixtures browser and page

TOKEN = "browser-test-token"
STABLE = "smollm2-chat@1.0.0"
CANDIDATE = "smollm2-chat@1.1.0"
CONCISE = "s/system: You are a helpful assistant./system: You are a concise assistant./"

CASES = [
    {
        "id": "sky",
        "input": "What color is the sky on a clear day?",
        "tags": ["en"],
        "assert": [{"type": "icontains", "value": "blue"}],
    },
    {
        "id": "week",
        "input": "How many days are there in a week?",
        "tags": ["en"],
        "assert": [{"type": "regex", "value": "\\b(7|seven)\\b"}],
    },
    {
        "id": "zebra",
        "input": "What is the capital of France?",
        "tags": ["en", "impossible"],
        "assert": [{"type": "contains", "value": "Zebra-42"}],
    },
]
GOLDEN = "cat > evals/ui.jsonl <<'EOF'\n" + "".join(json.dumps(c) + "\n" for c in CASES) + "EOF"
"""A golden set whose case ``zebra`` asks for an answer no model gives: it fails."""
COMMAND = re.compile(r"^(llmship|curl) ")
"""How the command an empty list suggests begins."""


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """``llmship gateway`` over an empty registry, with an admin token (no model)."""
    workdir = tmp_path_factory.mktemp("bare")
    gateway = GatewayProcess(workdir, env={"LLMSHIP_ADMIN_TOKEN": TOKEN})
    try:
        gateway.wait_ready(path="/healthz")
        yield gateway
    finally:
        gateway.stop()


def test_the_shell_reads_without_a_token_and_asks_for_a_right_one(
    bare: GatewayProcess, page: Page
) -> None:
    from playwright.sync_api import expect

    # Given the dashboard opened without a token: read-only, and it says so
    opened = page.goto(f"{bare.url}/ui")
    assert opened is not None and opened.status == 200
    expect(page.locator("#access")).to_have_text("Read-only")
    expect(page.locator("h1")).to_have_count(1)

    # When a wrong token is given, with the keyboard only, the dialog says it is wrong
    # and keeps none; Escape closes it
    page.get_by_role("button", name="Sign in with the admin token").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Token", exact=True)).to_be_focused()
    page.keyboard.type("not-the-token")
    page.keyboard.press("Enter")
    expect(page.locator("#token-error")).to_contain_text("wrong")
    assert page.evaluate("sessionStorage.getItem('llmship.token')") is None
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.locator("#access")).to_have_text("Read-only")

    # When the right one is given, the page may act, for this browser session only
    sign_in(page, TOKEN)
    expect(page.locator("#access")).to_have_text("admin-api (admin)")
    page.reload()
    expect(page.locator("#access")).to_have_text("admin-api (admin)")
    page.get_by_role("button", name="Change token").click()
    page.get_by_role("button", name="Forget the token").click()
    expect(page.locator("#access")).to_have_text("Read-only")

    # When the token kept in the session is no longer the gateway's (it was changed),
    # the page says the token is wrong, forgets it, and shows what anyone may read
    # (set on a page that polls nothing, so that no request sees it before the reload)
    page.goto(f"{bare.url}/ui/nowhere")
    page.evaluate("sessionStorage.setItem('llmship.token', 'an-old-token')")
    page.evaluate("sessionStorage.setItem('llmship.who', '{\"role\": \"admin\"}')")
    page.goto(f"{bare.url}/ui")
    expect(page.locator("#banner")).to_contain_text("The admin token is wrong")
    expect(page.locator("#access")).to_have_text("Read-only")
    expect(page.locator("h1")).to_have_text("Overview of dev")
    assert page.evaluate("sessionStorage.getItem('llmship.token')") is None

    # and what is not there is a 404 page, not a blank one
    for path in ("/ui/rollouts/999999", "/ui/evals/999999", "/ui/nowhere"):
        missing = page.goto(f"{bare.url}{path}")
        assert missing is not None and missing.status == 404, path
        expect(page.locator("h1")).to_have_text("404: not found")
    shoot(page, "not-found")

    # and each list, empty, says which command fills it
    for path in ("", "/rollouts", "/releases", "/evals", "/loadtests", "/feedback"):
        page.goto(f"{bare.url}/ui{path}")
        expect(page.locator("main .empty code").first).to_have_text(COMMAND)
        if path == "/rollouts":
            shoot(page, "rollouts-empty")


def rate_some(url: str) -> list[str]:
    """Three answers from the gateway, rated through ``POST /feedback`` with a comment
    each (and a thumbs); the comments."""
    comments = []
    with httpx.Client(timeout=120) as http:
        for n, rating in enumerate((5, 4, 2)):
            answer = http.post(f"{url}/predict", json={"prompt": "Hi there", "max_new_tokens": 8})
            assert answer.status_code == 200, answer.text
            comment = f"browser test comment {n}"
            body = {
                "query_id": answer.headers["x-request-id"],
                "rating": rating,
                "thumbs": "up" if rating > 3 else "down",
                "comment": comment,
            }
            sent = http.post(f"{url}/feedback", json=body)
            assert sent.status_code == 200, sent.text
            comments.append(comment)
    return comments


def run_eval(shell: Shell) -> tuple[int, set[str]]:
    """1.1.0 registered with another system prompt, and ``llmship eval`` of it against
    production on :data:`GOLDEN`: the stored run's id, and the cases the candidate failed
    (``zebra`` among them)."""
    seds = f"-e 's/^version: 1.0.0/version: 1.1.0/' -e '{CONCISE}'"
    shell.run(f"grep -v '^#' models/smollm2-chat-1.0.0.yaml | sed {seds} > models/1.1.0.yaml")
    shell.run("llmship models register models/1.1.0.yaml")
    shell.run(GOLDEN)
    shell.run(
        f"llmship eval --dataset evals/ui.jsonl --candidate {CANDIDATE} --max-tokens 24 "
        "--json eval.json",
        codes=(0, 1),
    )
    report = json.loads((shell.cwd / "eval.json").read_text(encoding="utf-8"))
    failing = {c["id"] for c in report["cases"] if not c["candidate"]["passed"]}
    assert "zebra" in failing, report["cases"]
    return int(report["run"]), failing


def eval_page(tab: Page, url: str, run: int, failing: set[str]) -> None:
    """The eval's page shows the metrics and the failing case, marked failed; "Only
    failed" and "Tag" filter the cases; the list of runs links to it."""
    from playwright.sync_api import expect

    opened = tab.goto(f"{url}/ui/evals/{run}")
    assert opened is not None and opened.status == 200
    expect(tab.get_by_test_id("metrics")).to_contain_text("pass_rate")
    cases = tab.get_by_test_id("cases")
    expect(cases).to_contain_text("What is the capital of France?")
    failed = cases.locator(".fail")
    expect(failed.filter(has_text="capital of France")).to_contain_text("failed")
    shoot(tab, "eval")
    tab.get_by_label("Only failed", exact=True).check()
    expect(failed).to_have_count(len(failing))
    if "sky" not in failing:
        expect(cases).not_to_contain_text("What color is the sky")
    shoot(tab, "eval-failed-only")
    tab.get_by_label("Only failed", exact=True).uncheck()
    tab.get_by_label("Tag", exact=True).select_option("impossible")
    expect(cases).to_contain_text("What is the capital of France?")
    expect(cases).not_to_contain_text("How many days are there in a week?")
    tab.locator("nav").get_by_role("link", name="Evals").click()
    expect(tab.locator(f'main a[href^="/ui/evals/{run}"]').first).to_be_visible()
    shoot(tab, "evals")


def release_pages(tab: Page, url: str, run: int) -> None:
    """The releases, 1.1.0's page (its spec, a link to its eval run), the diff of the two."""
    from playwright.sync_api import expect

    tab.locator("nav").get_by_role("link", name="Releases").click()
    expect(tab.locator("main")).to_contain_text(STABLE)
    expect(tab.locator("main h1")).to_be_focused()  # where a page load would start reading
    shoot(tab, "releases")
    tab.locator("main").get_by_role("link", name=CANDIDATE).first.click()
    expect(tab.locator("h1")).to_contain_text("1.1.0")
    expect(tab.locator("main h1")).to_be_focused()
    expect(tab.locator("main")).to_contain_text("You are a concise assistant.")
    expect(tab.locator(f'main a[href^="/ui/evals/{run}"]').first).to_be_visible()
    shoot(tab, "release")
    tab.goto(f"{url}/ui/releases/diff?a={STABLE}&b={CANDIDATE}")
    expect(tab.get_by_label("From", exact=True)).to_be_visible()
    expect(tab.get_by_label("To", exact=True)).to_be_visible()
    expect(tab.locator("main")).to_contain_text("prompt.system")
    expect(tab.locator("main")).to_contain_text("You are a concise assistant.")
    shoot(tab, "release-diff")


@pytest.mark.slow
@pytest.mark.xdist_group("journeys")
@pytest.mark.timeout(600)
def test_an_eval_with_a_failing_case_and_the_release_pages(tmp_path: Path, page: Page) -> None:
    from playwright.sync_api import expect

    shell = Shell(project(tmp_path), free_port())
    with stack(shell):
        # Given the stack serving 1.0.0, and an eval of 1.1.0 (another system prompt)
        # against it on a golden set with a failing case
        run, failing = run_eval(shell)
        # and answers rated by their users
        comments = rate_some(shell.url)

        # When a person opens the eval's page, then it shows the failing case and
        # filters to the failed ones
        eval_page(page, shell.url, run, failing)

        # and the releases, one release with its spec, and the diff of the two render
        release_pages(page, shell.url, run)

        # and the feedback: ratings per release and the comments
        page.locator("nav").get_by_role("link", name="Feedback").click()
        expect(page.locator("main")).to_contain_text(STABLE)
        for comment in comments:
            expect(page.locator("main")).to_contain_text(comment)
        ratings = page.locator("main figure.chart").first  # a line, or a dot for one bucket
        expect(ratings.locator('circle, path[d*="L"]')).not_to_have_count(0)
        shoot(page, "feedback")

        # and the load tests' page, with none yet, says how to run one
        page.locator("nav").get_by_role("link", name="Load tests").click()
        expect(page.locator("main")).to_contain_text(re.compile(r"llmship loadtest"))
        shoot(page, "loadtests-empty")
