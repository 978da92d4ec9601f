"""The browser fixtures (``browser``, ``page``) of the dashboard's tests, loaded by the
test files that list this module in ``pytest_plugins``; the helpers they use, and the
tests too (:func:`_browser.shoot`, :func:`_browser.sign_in`), are in ``_browser.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from _browser import CHROMIUM_ARGS, DESKTOP, chromium_path, missing, watch

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless chromium through Playwright, one per test module; skipped, saying what
    is missing, without Playwright or chromium, and failed instead under ``CI``."""
    problem = missing()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)  # a busy CI machine: the page polls every 1.5 s
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A tab at 1280x800 in a fresh context (no token kept); the test fails on an
    uncaught exception, a console error or a 5xx answer in it."""
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    problems = watch(tab)
    try:
        yield tab
    finally:
        context.close()
    problems.check()
