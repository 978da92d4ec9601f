"""The release, eval, load-test and feedback pages in a real browser (chromium, headless),
over a gateway whose registry already holds what the commands leave behind (no model;
seconds): two releases and the moves of an alias, an eval run (the stored report of
``tests/data/eval_report_v1.json``), a load test built from request records, and rated
answers with comments. The model-backed journey is ``tests/test_ui_browser_pages.py``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from _browser import shoot
from _loadtest_reports import measured_report
from _procs import GatewayProcess
from _registry import make_spec
from llmship.eval.report_model import EvalReport
from llmship.loadtest import LoadPlan, RequestRecord
from llmship.loadtest.report import summary as loadtest_summary
from llmship.registry import Registry
from llmship.registry.records import QueryRecord

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytest_plugins = ["_browser_fixtures"]  # the fixtures browser and page

EVAL_REPORT = Path(__file__).parent / "data" / "eval_report_v1.json"
COMMENTS = 25
"""Rated answers with a comment: more than one page (20) of the feedback page."""


@dataclass
class Seeded:
    """The gateway over the seeded registry, and the ids of the runs in it."""

    gateway: GatewayProcess
    eval_run: int
    loadtest_run: int

    @property
    def url(self) -> str:
        return self.gateway.url


def _loadtest_report() -> tuple[dict[str, object], dict[str, object], bool]:
    """A load test of chat@1.1.0 over 30 s of request records, some of them failed:
    (summary, report, passed)."""
    rng = random.Random(7)
    records = []
    for k in range(200):
        ok = rng.random() > 0.05
        records.append(
            RequestRecord(
                1.0 + k * 0.15,
                rng.uniform(0.3, 1.2) if ok else 0.05,
                rng.uniform(0.05, 0.4) if ok else None,
                8 if ok else 0,
                (0.05, 0.06) if ok else (),
                version="chat@1.1.0",
                **({} if ok else {"error": "HTTP 503: busy", "status": 503}),
            )
        )
    start, end = 1.0, 31.0
    slos = {"ttft_p95": 0.5, "error_rate": 0.01}
    plan = LoadPlan(target="http://127.0.0.1:9", users=2, duration=end - start, warmup=1.0)
    report = measured_report(
        plan,
        slos,
        records,
        window=(start, end),
        ref="chat@1.1.0",
        cpu_window_s=0.2,
        cpu_run_s=0.5,
        cpu_process_s=1.0,
        locust={"num_requests": len(records)},
        user_errors=[],
    )
    return loadtest_summary(report), report.to_json(), report.passed


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """``llmship gateway`` over a registry with releases, aliases, gate runs and feedback."""
    workdir = tmp_path_factory.mktemp("runs")
    home = workdir / ".llmship"
    registry = Registry.open(f"sqlite:///{home / 'registry.db'}", home=home)
    try:
        registry.register(make_spec(version="1.0.0"), actor="alice")
        concise = {"system": "You are a concise assistant."}
        registry.register(make_spec(version="1.1.0", prompt=concise), actor="ci-bot")
        registry.set_alias("dev", "production", "chat@1.0.0", actor="alice", reason="launch")
        registry.set_alias("dev", "production", "chat@1.1.0", actor="bob", reason="shorter")
        data = json.loads(EVAL_REPORT.read_text())
        evaluation = registry.record_gate_run(
            "eval",
            "chat@1.1.0",
            env="dev",
            passed=False,
            summary=EvalReport.from_json(data).summary().to_json(),
            report=data,
            actor="ci-bot",
            baseline_ref="chat@1.0.0",
        )
        summary, report, passed = _loadtest_report()
        load = registry.record_gate_run(
            "loadtest",
            "chat@1.1.0",
            env="dev",
            passed=passed,
            summary=summary,
            report=report,
            actor="ci-bot",
        )
        for k in range(COMMENTS + 5):
            query = QueryRecord(
                query_id=f"query{k:04d}",
                env="dev",
                ref="chat@1.1.0" if k % 2 else "chat@1.0.0",
                variant="stable",
                route="/v1/chat/completions",
                status=200,
                at=datetime.now(timezone.utc),
            )
            registry.record_queries([query])
            comment = f"comment number {k}" if k < COMMENTS else None
            registry.add_feedback(
                query.query_id, rating=1 + k % 5, thumbs="up" if k % 3 else "down", comment=comment
            )
    finally:
        registry.close()
    gateway = GatewayProcess(workdir, env={"LLMSHIP_ADMIN_TOKEN": "runs-test-token"})
    try:
        gateway.wait_ready(path="/healthz")
        yield Seeded(gateway, evaluation.id, load.id)
    finally:
        gateway.stop()


def test_an_eval_page_filters_its_cases(seeded: Seeded, page: Page) -> None:
    from playwright.sync_api import expect

    # Given the eval run's page
    page.goto(f"{seeded.url}/ui/evals/{seeded.eval_run}")
    metrics = page.get_by_test_id("metrics")
    cases = page.get_by_test_id("cases")
    articles = cases.locator("article")

    # Then the metrics compare both sides, and the six cases show side by side
    expect(metrics.locator('tr[data-metric="pass_rate"]')).to_contain_text("failed")
    expect(metrics.locator('tr[data-metric="pass_rate"]')).to_contain_text("[-0.8, 0]")
    expect(articles).to_have_count(6)
    expect(cases.locator('article[data-case="fr"]')).to_have_class("case fail")
    expect(cases.locator('article[data-case="fr"]')).to_contain_text("Lyon")
    expect(cases.locator('article[data-case="fr"]')).to_contain_text("does not contain 'Paris'")

    # When filtered by a tag, then by a failed assertion's type, then to failed cases
    page.get_by_label("Tag", exact=True).select_option("zh")
    expect(articles).to_have_count(1)
    expect(articles).to_contain_text("Case zh")
    page.get_by_label("Tag", exact=True).select_option("")
    page.get_by_label("Assertion", exact=True).select_option("generation")
    expect(articles).to_have_count(1)
    expect(cases.locator(".fail")).to_contain_text("failed")
    expect(cases.locator(".fail")).to_contain_text("generation failed: boom")
    page.get_by_label("Assertion", exact=True).select_option("")
    page.get_by_label("Only failed", exact=True).check()

    # Then only the failing cases are left, and the filter is in the address to share
    expect(articles).to_have_count(2)
    expect(cases.locator(".fail")).to_have_count(2)
    assert page.url.endswith("?failed=true")
    shoot(page, "eval-seeded-failed-only")
    page.reload()
    expect(page.get_by_label("Only failed", exact=True)).to_be_checked()
    expect(articles).to_have_count(2)


def test_a_load_test_page_shows_its_report_with_plots(seeded: Seeded, page: Page) -> None:
    from playwright.sync_api import expect

    # Given the load tests: none of chat@1.0.0 (the page says how to run one), one of 1.1.0
    page.goto(f"{seeded.url}/ui/loadtests")
    release = page.get_by_label("Release", exact=True)
    release.select_option("chat@1.0.0")
    expect(page.locator("main .empty")).to_contain_text("llmship loadtest --release chat@1.0.0")
    release.select_option("chat@1.1.0")
    assert page.url.endswith("?ref=chat%401.1.0")

    # When one run's page is opened from the list
    page.locator("main").get_by_role("link", name=f"#{seeded.loadtest_run}", exact=True).click()

    # Then it shows the summary, the SLOs, charts of the timeline and the HTML report
    expect(page.locator("h1")).to_have_text(f"Load test {seeded.loadtest_run}")
    expect(page.locator("main")).to_contain_text("ttft_p95")
    expect(page.get_by_test_id("loadtest-charts").locator("figure")).to_have_count(4)
    report = page.frame_locator('iframe[title="Load-test report"]')
    expect(report.locator("h1")).to_contain_text("chat@1.1.0")
    expect(report.locator("svg").first).to_be_visible()
    shoot(page, "loadtest")


def test_feedback_charts_and_comments_page_through(seeded: Seeded, page: Page) -> None:
    from playwright.sync_api import expect

    # Given the feedback page of dev
    page.goto(f"{seeded.url}/ui/feedback")
    expect(page.locator("h1")).to_have_text("Feedback in dev")

    # Then the ratings per release are charted, and the comments come 20 at a time
    expect(page.get_by_test_id("feedback-charts").locator("figure")).to_have_count(2)
    expect(page.get_by_test_id("feedback-summary")).to_contain_text("chat@1.1.0")
    expect(page.locator("main")).to_contain_text(f"comment number {COMMENTS - 1}")
    shoot(page, "feedback-seeded")
    older = page.get_by_role("button", name="Older")
    status = page.locator(".pager [aria-live]")
    for _ in range(COMMENTS):  # each comment is on two rows: its rating and its thumbs
        if older.is_disabled():
            break
        shown = status.inner_text()
        older.click()
        expect(status).not_to_have_text(shown)
    expect(page.locator("main")).to_contain_text("comment number 0")
    page.get_by_role("button", name="Newer").click()
    expect(page.get_by_role("button", name="Older")).to_be_enabled()


def test_releases_alias_history_and_a_diff_chosen_in_the_page(seeded: Seeded, page: Page) -> None:
    from playwright.sync_api import expect

    # Given the releases, with the history of dev's production alias
    page.goto(f"{seeded.url}/ui/releases")
    history = page.locator("section.alias-history")
    expect(history).to_contain_text("History of production in dev")
    expect(history.locator("tbody tr")).to_have_count(2)
    expect(history).to_contain_text("shorter")

    # When two releases are chosen on the diff page
    page.get_by_role("link", name="Compare two releases").click()
    page.get_by_label("From", exact=True).select_option("chat@1.0.0")
    page.get_by_label("To", exact=True).select_option("chat@1.1.0")
    page.get_by_role("button", name="Compare").click()

    # Then the changed fields and the unified diff show, and the address names both
    expect(page.locator('tr[data-path="prompt.system"]')).to_contain_text("concise")
    added = page.get_by_test_id("unified-diff").locator("ins")
    expect(added.filter(has_text="system: You are a concise assistant.")).to_have_count(1)
    assert "a=chat%401.0.0&b=chat%401.1.0" in page.url
