"""The studio's shell in headless Chromium: the runs table renders every run folder, and the page asks for
the key when the studio has one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.studio_browser import studio_page, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.requires_browser]


def test_runs_table_in_chromium(studio_root: Path) -> None:
    with studio_page(studio_root) as (page, url):
        page.goto(url + "/#/runs")
        wait_ready(page)
        rows = page.locator("main tbody tr")
        assert rows.count() == 3
        assert "curated" in page.inner_text("main")


def test_the_page_asks_for_the_key(studio_root: Path) -> None:
    with studio_page(studio_root, api_key="k3y") as (page, url):
        page.goto(url + "/#/runs")
        page.wait_for_selector("#api-key")
        page.fill("#api-key", "k3y")
        page.press("#api-key", "Enter")
        page.wait_for_selector("main tbody tr")
        assert page.locator("main tbody tr").count() == 3


PAGES = [
    "#/runs",
    "#/run?path=a",
    "#/compare?path=a&path=b",
    "#/data",
    "#/data?path=curated",
    "#/train",
    "#/chat",
    "#/export?path=a",
]


def test_every_page_fits_a_phone_width(studio_root: Path) -> None:
    """At 375 px nothing but a table's own scroll box is wider than the screen (the page never scrolls
    sideways), and each page rendered without an error."""
    with studio_page(studio_root, width=375, height=800) as (page, url):
        for hash_ in PAGES:
            page.goto(f"{url}/{hash_}")
            page.reload()  # a new hash alone would keep the old page's scroll position
            wait_ready(page)
            errors = [t for t in page.locator("main .error").all_inner_texts() if t.strip()]
            assert not errors, (hash_, errors)
            assert page.locator("main h1").count() >= 1, hash_
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= 375, f"{hash_} is {wide} px wide at a 375 px screen"


def test_the_pages_are_reached_with_the_keyboard(studio_root: Path) -> None:
    """Tab from the top reaches every nav link, and Enter on one opens its page (no mouse)."""
    with studio_page(studio_root) as (page, url):
        page.goto(url + "/#/runs")
        wait_ready(page)
        reached = []
        for _ in range(12):
            page.keyboard.press("Tab")
            reached.append(page.evaluate("document.activeElement.getAttribute('data-nav')"))
        assert {"runs", "compare", "data", "train", "chat", "export"} <= set(reached)
        while page.evaluate("document.activeElement.getAttribute('data-nav')") != "data":
            page.keyboard.press("Shift+Tab")
        page.keyboard.press("Enter")
        page.wait_for_selector("main[data-page=data][data-state=ready]")
        assert page.locator("main a[href='#/data?path=curated']").count() >= 1
