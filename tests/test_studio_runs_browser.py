"""The runs pages in headless Chromium: pick ``a`` and ``b`` in the runs table (one with the keyboard, one
with a click), compare them, and read the run page's metrics; takes the ``runs``, ``compare`` and ``run``
screenshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.studio_browser import screenshot, studio_page, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.requires_browser]


def test_pick_two_runs_compare_them_and_read_a_run_page(studio_root: Path) -> None:
    after_a = json.loads((studio_root / "a" / "eval" / "after.json").read_text())["metrics"]
    after_b = json.loads((studio_root / "b" / "eval" / "after.json").read_text())["metrics"]
    with studio_page(studio_root) as (page, url):
        page.goto(url + "/#/runs")
        wait_ready(page)
        page.wait_for_selector("#runs tbody tr")
        assert page.locator("#runs tbody tr").count() == 3
        assert page.is_disabled("#compare")
        page.focus('#runs input[data-path="a"]')
        page.keyboard.press("Space")  # the keyboard way
        page.click('#runs input[data-path="b"]')
        assert page.is_enabled("#compare")
        screenshot(page, "runs")
        page.focus("#compare")
        page.keyboard.press("Enter")

        page.wait_for_selector('#config-diff tr[data-key="train.optim.lr"]')
        assert page.evaluate("location.hash") == "#/compare?path=a&path=b"
        keys = page.eval_on_selector_all("#config-diff tbody tr", "rows => rows.map(r => r.dataset.key)")
        assert sorted(keys) == ["name", "train.optim.lr"]
        lr = page.locator('#config-diff tr[data-key="train.optim.lr"] td')
        assert [lr.nth(0).inner_text(), lr.nth(1).inner_text()] == ["0.005", "0.02"]
        delta = page.get_attribute(
            '#compare-metrics tr[data-metric="loss"] td.delta[data-run="b"]', "data-value"
        )
        assert float(delta) == pytest.approx(after_b["loss"] - after_a["loss"], rel=1e-12)
        assert page.locator("#compare-loss path[data-series]").count() == 4  # train and eval loss, a and b
        screenshot(page, "compare")

        page.goto(url + "/#/run?path=a")
        page.wait_for_selector("#metrics tr[data-metric]")
        wait_ready(page)
        shown = page.eval_on_selector_all(
            "#metrics tr[data-metric]",
            "rows => rows.map(r => [r.dataset.metric, r.querySelector('td.after').dataset.value])",
        )
        numbers = {k: v for k, v in after_a.items() if isinstance(v, int | float)}
        assert {name: float(v) for name, v in shown} == numbers
        assert page.locator('#stages [data-status="done"]').count() == 5
        assert page.locator("#report").get_attribute("sandbox") == ""
        screenshot(page, "run")
