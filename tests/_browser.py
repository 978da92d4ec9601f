"""The dashboard in a real browser: Playwright (its Python package) driving Debian's
``chromium`` headless, for the ``tests/test_ui_browser_*.py`` files.

- The fixtures (in ``_browser_fixtures.py``, which the test files list in
  ``pytest_plugins``): ``browser``, one chromium per test module; without Playwright or
  chromium the tests are skipped, saying which is missing, except under ``CI`` (set by
  CI services), where they fail: ``make test`` installs both. ``page``, a tab at
  1280x800 in a fresh context (no session storage, so no admin token).
- :func:`watch`: whatever goes wrong in a page fails its test: an uncaught exception or
  rejected promise, a ``console.error`` of the page's scripts, or a 5xx answer from the
  gateway. (Chromium also logs every 4xx a ``fetch`` gets as a console error; those are
  not counted: the tests provoke 401, 403 and 404 on purpose and check what the page
  says about them.)
- :func:`shoot`: screenshots at both widths the dashboard must be readable at, kept
  under ``artifacts/screenshots/`` (``LLMSHIP_SCREENSHOTS`` to put them elsewhere),
  the folder CI keeps as an artifact.
- :func:`sign_in`: the admin token given as a person gives it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium (``make system-deps``): Playwright downloads no browser of its own."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Headless, no sandbox (containers have no user namespaces), nothing reaching out to the
network by itself. The profile is a fresh temporary folder: Playwright makes one for every
launch and removes it on close (``launch`` refuses ``--user-data-dir``, which is only for
``launch_persistent_context``)."""

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


def screenshots() -> Path:
    """Where :func:`shoot` saves: ``LLMSHIP_SCREENSHOTS``, else ``artifacts/screenshots``
    under the repository root."""
    folder = Path(os.environ.get("LLMSHIP_SCREENSHOTS") or REPO / "artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def missing() -> str | None:
    """What the browser tests lack, in words; None when nothing is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is missing: `make test-deps` installs it"
    if not (Path(CHROMIUM).is_file() or shutil.which("chromium")):
        return f"chromium is missing ({CHROMIUM}): `make system-deps` installs Debian's"
    return None


def chromium_path() -> str:
    """Debian's chromium, else the first ``chromium`` on ``PATH``."""
    return CHROMIUM if Path(CHROMIUM).is_file() else str(shutil.which("chromium"))


@dataclass
class Problems:
    """What went wrong in a page: uncaught exceptions, console errors, 5xx answers."""

    items: list[str] = field(default_factory=list)

    def console(self, message: Any) -> None:
        text = str(message.text)
        if message.type == "error" and not text.startswith("Failed to load resource"):
            self.items.append(f"console.error: {text} ({message.location.get('url', '')})")

    def uncaught(self, error: Any) -> None:
        self.items.append(f"uncaught: {error}")

    def response(self, response: Any) -> None:
        if response.status >= 500:
            self.items.append(f"{response.status} from {response.request.method} {response.url}")

    def check(self) -> None:
        """Fail with every problem seen so far (and forget them)."""
        seen, self.items = self.items, []
        assert not seen, "the page went wrong:\n" + "\n".join(seen)


_WATCHED: WeakKeyDictionary[Page, Problems] = WeakKeyDictionary()


def watch(tab: Page) -> Problems:
    """Collect what goes wrong in ``tab`` from now on."""
    problems = _WATCHED[tab] = Problems()
    tab.on("console", problems.console)
    tab.on("pageerror", problems.uncaught)
    tab.on("response", problems.response)
    return problems


def check_page(tab: Page) -> None:
    """Fail now with the problems of ``tab`` so far (the ``page`` fixture checks again
    when the test ends)."""
    _WATCHED[tab].check()


STRAY = re.compile(r"\b(undefined|NaN)\b|\[object \w+\]|^null$", re.M)
"""What a script leaks into a page when it shows a value it does not have."""


def stray_text(tab: Page) -> list[str]:
    """The lines of the page's ``main`` that show ``undefined``, ``NaN``, ``[object
    Object]`` or only ``null``: a value the page's script did not have."""
    text = str(tab.locator("main").inner_text())
    return [line for line in text.splitlines() if STRAY.search(line)]


def shoot(tab: Page, name: str, *, fits: bool = True) -> list[Path]:
    """Screenshots of the page as it is: ``NAME-1280x800.png`` (the 1280x800 window)
    and ``NAME-390.png`` (390x844, the whole page); their paths. Then the page must
    show no stray ``undefined``/``null`` (:func:`stray_text`) and, with ``fits``, be
    no wider than 390 px (readable on a phone without scrolling sideways; wide tables
    scroll inside their own box)."""
    folder = screenshots()
    desktop, phone = folder / f"{name}-1280x800.png", folder / f"{name}-390.png"
    size = tab.viewport_size or DESKTOP
    tab.screenshot(path=str(desktop))
    tab.set_viewport_size(PHONE)
    try:
        tab.wait_for_timeout(300)  # charts redraw on resize
        tab.screenshot(path=str(phone), full_page=True)
        width = tab.evaluate("document.documentElement.scrollWidth")
    finally:
        tab.set_viewport_size(size)
    assert not stray_text(tab), f"{name} shows values it lacks: {stray_text(tab)}"
    assert not fits or width <= PHONE["width"] + 1, f"{name}: {width} px wide at 390 px"
    return [desktop, phone]


def sign_in(tab: Page, secret: str) -> None:
    """Sign in as a person does: the header's button, the token, "Use this token"."""
    tab.get_by_role("button", name="Sign in with the admin token").click()
    tab.get_by_label("Token", exact=True).fill(secret)
    tab.get_by_role("button", name="Use this token").click()


__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "DESKTOP",
    "PHONE",
    "REPO",
    "Problems",
    "check_page",
    "chromium_path",
    "missing",
    "screenshots",
    "shoot",
    "sign_in",
    "stray_text",
    "watch",
]
