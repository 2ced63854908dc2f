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
