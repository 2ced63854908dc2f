"""The Train page in headless Chromium: a run started from the form (kind run, started from inputs/a.yaml,
renamed) is followed to its end and its run page shows the before/after table; a config error typed into
a field comes back as the loader's message beside that field, and no job starts. Screenshots ``train``
(the form) and ``train-live`` (a finished job's progress page)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.studio_browser import screenshot, studio_page, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.requires_browser]


@pytest.fixture
def runs(studio_root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "runs"
    shutil.copytree(studio_root, out)
    return out


def open_form(page, url: str) -> None:
    page.goto(url + "/#/train")
    wait_ready(page)
    page.select_option("#form-kind", "run")
    page.select_option("#form-from", "inputs/a.yaml")
    page.wait_for_function(
        "document.querySelector('#f-name') && document.querySelector('#f-name').value === 'a'"
    )


def test_a_run_started_from_the_form_is_followed_to_its_before_after_table(runs: Path) -> None:
    with studio_page(runs) as (page, url):
        open_form(page, url)
        field = page.locator(".field[data-field='train.optim.lr']")
        assert field.locator("input").input_value() == "0.005"
        assert "Peak learning rate." in field.locator("small").inner_text()
        assert page.locator("details[data-section='train.optim'] summary").count() == 1
        screenshot(page, "train")
        page.fill("#f-name", "from-form")
        page.click("#job-start")
        page.wait_for_selector("#job-status[data-status=running], #job-status[data-status=done]")
        page.wait_for_selector("#job-progress")
        page.wait_for_selector("#job-status[data-status=done]", timeout=300_000)
        page.wait_for_selector("#job-metrics tr[data-metric]")
        after = json.loads((runs / "from-form" / "eval" / "after.json").read_text())["metrics"]
        shown = page.locator("#job-metrics tr[data-metric='perplexity'] td.after").inner_text()
        assert float(shown.replace(",", "")) == pytest.approx(after["perplexity"], rel=1e-3)
        assert page.locator("#job-progress").get_attribute("value") == page.locator(
            "#job-progress"
        ).get_attribute("max")
        assert page.locator("#job-loss svg path[data-series='train loss']").count() == 1
        screenshot(page, "train-live")
        page.click("#job-run-link")
        page.wait_for_selector("table#metrics tr[data-metric]")
        row = page.locator("table#metrics tr[data-metric='perplexity']")
        assert row.locator("td.before").inner_text().strip() and row.locator("td.after").inner_text().strip()
        assert page.locator("table#metrics tr[data-metric]").count() == len(
            [v for v in after.values() if isinstance(v, int | float)]
        )


def loader_message(runs: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """What ``instructkit run`` says of inputs/a.yaml with ``train.optim.lr: fast`` (run in the runs folder)."""
    import yaml

    from instructkit.config import ConfigError, load
    from instructkit.recipe.plan import check_recipe
    from instructkit.recipe.schema import Recipe, RecipeError

    data = yaml.safe_load((runs / "inputs" / "a.yaml").read_text())
    data["train"]["optim"]["lr"] = "fast"
    monkeypatch.chdir(runs)
    with pytest.raises(ConfigError) as e:
        check_recipe(load(Recipe, data, error=RecipeError))
    return str(e.value)


def test_a_config_error_shows_the_loaders_message_by_its_field(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = loader_message(runs, monkeypatch)
    with studio_page(runs) as (page, url):
        open_form(page, url)
        page.fill("#f-name", "never")
        page.fill("#f-train-optim-lr", "fast")
        page.click("#job-start")
        error = page.locator(".field[data-field='train.optim.lr'] .field-error")
        error.wait_for(state="visible")
        assert error.inner_text() == expected and "'train.optim.lr'" in expected
        assert page.locator("#f-train-optim-lr").get_attribute("aria-invalid") == "true"
        assert page.evaluate("document.activeElement.id") == "f-train-optim-lr"
        assert "#/train" in page.url and "job=" not in page.url
        assert page.evaluate("studio.api('/api/jobs').then(r => r.jobs.length)") == 0
    assert not (runs / ".studio").exists() and not (runs / "never").exists()


def test_the_run_page_follows_a_running_job_to_its_end(runs: Path) -> None:
    """Opened while the studio's job is still in its first stages, the run page shows its stages getting
    done without a reload, and draws the finished run (before/after table) once the job ends."""
    import time
    import urllib.request

    import yaml

    config = yaml.safe_load((runs / "inputs" / "a.yaml").read_text())
    config["name"] = "live"
    config["train"]["optim"]["max_steps"] = 16
    with studio_page(runs) as (page, url):
        body = json.dumps({"kind": "run", "config": config}).encode()
        req = urllib.request.Request(url + "/api/jobs", body, {"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=60).read()
        deadline = time.monotonic() + 120
        while not json.loads(urllib.request.urlopen(url + "/api/runs?q=live", timeout=30).read())["runs"]:
            assert time.monotonic() < deadline, "the job's run folder never appeared"
            time.sleep(0.2)  # the run folder is made by the job's first stage
        page.goto(url + "/#/run?path=live")
        page.wait_for_selector("#run-job")  # the page knows a job runs here
        page.evaluate("window.__same_page = true")  # gone if the page were loaded again
        page.wait_for_selector("#stages [data-stage=train][data-status=done]", timeout=300_000)
        page.wait_for_selector("table#metrics tr[data-metric=perplexity] td.after", timeout=300_000)
        page.wait_for_selector("#stages [data-stage=report][data-status=done]", timeout=300_000)
        assert page.evaluate("window.__same_page") is True
        shown = float(page.get_attribute("table#metrics tr[data-metric=perplexity] td.after", "data-value"))
    after = json.loads((runs / "live" / "eval" / "after.json").read_text())["metrics"]
    assert shown == after["perplexity"]
