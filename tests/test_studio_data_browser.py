"""The Data pages in headless Chromium: a curated folder's rejects filtered by reason show the card's exact
count, and the loss-mask view highlights the trained tokens; screenshots ``data`` and ``rejects``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.studio_browser import screenshot, studio_page, wait_ready
from tests.test_studio_data import DEMO, FIXTURE, RICH_STEPS

pytestmark = [pytest.mark.slow, pytest.mark.requires_browser]


def test_rejects_by_reason_and_the_loss_mask_in_chromium(studio_root: Path, tmp_path: Path) -> None:
    from instructkit.data.curate_config import CurateConfig
    from instructkit.data.pipeline import curate

    runs = tmp_path / "runs"
    shutil.copytree(studio_root / "curated", runs / "curated")
    shutil.copytree(studio_root / "inputs" / "model", runs / "inputs" / "model")
    cfg = CurateConfig.from_dict({"steps": RICH_STEPS, "split": {"val": 0.1, "test": 0.2, "seed": 0}})
    curate([DEMO, FIXTURE], runs / "rich", cfg)
    card = json.loads((runs / "curated" / "card.json").read_text())
    rich = json.loads((runs / "rich" / "card.json").read_text())

    with studio_page(runs) as (page, url):
        page.goto(url + "/#/data")
        wait_ready(page)
        assert page.locator("main tbody tr").count() == 2
        page.click("a[href='#/data?path=curated']")
        page.wait_for_selector("#accounting[data-in]")
        wait_ready(page)
        acc = page.locator("#accounting")
        assert [int(acc.get_attribute(f"data-{k}")) for k in ("in", "kept", "rejected")] == [
            card["accounting"][k] for k in ("in", "kept", "rejected")
        ]
        for reason, n in card["rejected_by_reason"].items():
            page.select_option("#reject-reason", reason)
            page.wait_for_function(
                "([r, n]) => document.querySelectorAll(`.reject[data-reason='${r}']`).length === n"
                " && document.getElementById('reject-count').textContent === String(n)",
                arg=[reason, n],
            )
            assert page.locator(".reject").count() == n
        # the duplicate is shown beside the kept record it duplicated
        page.select_option("#reject-reason", "exact_duplicate")
        page.wait_for_selector(".reject[data-reason=exact_duplicate] [data-match=duplicate]")
        # the filter is in the URL: a reload shows the same filtered view
        assert "reason=exact_duplicate" in page.url
        page.reload()
        wait_ready(page)
        page.wait_for_function(
            "n => document.getElementById('reject-count').textContent === String(n)",
            arg=card["rejected_by_reason"]["exact_duplicate"],
        )
        assert page.input_value("#reject-reason") == "exact_duplicate"

        page.fill("#mask-model", "inputs/model")
        page.fill("#mask-index", "2")
        page.click("#mask-show")
        page.wait_for_selector("#mask .trained")
        counts = page.locator("#mask-counts")
        trained = int(counts.get_attribute("data-trained"))
        assert trained == page.locator("#mask .trained").count() > 0
        assert page.locator("#mask .context").count() == int(counts.get_attribute("data-tokens")) - trained

        page.goto(url + "/#/data?path=rich")
        wait_ready(page)
        page.wait_for_selector("#histograms .hist")
        assert page.locator("#histograms .hist").count() == len(rich["splits"])
        screenshot(page, "data")
        page.select_option("#reject-reason", "near_duplicate")
        n = rich["rejected_by_reason"]["near_duplicate"]
        page.wait_for_function(f"document.getElementById('reject-count').textContent === '{n}'")
        page.wait_for_function(f"document.querySelectorAll('.reject').length === {n}")
        page.evaluate("document.getElementById('rejects').scrollIntoView()")
        screenshot(page, "rejects")
