"""The studio in headless Chromium for the browser tests: ``with studio_page(runs) as (page, url):`` starts
the studio on a free loopback port and a 1280×800 page on it; ``screenshot(page, name)`` saves
``docs/studio/<name>.png`` (the README's pictures, kept up to date by the tests that take them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DOCS = Path(__file__).parent.parent / "docs" / "studio"


@contextlib.contextmanager
def studio_page(runs: Path, width: int = 1280, height: int = 800, **cfg: Any) -> Iterator[tuple[Any, str]]:
    from playwright import sync_api  # the [dev] extra; it drives the system chromium, no browser download

    from instructkit.studio.app import StudioThread
    from instructkit.studio.config import StudioConfig
    from tests.conftest import browser

    with StudioThread(StudioConfig(runs=str(runs), port=0, **cfg)) as url, sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser(), args=["--no-sandbox", "--headless=new"])
        try:
            page = chromium.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page, url
        finally:
            chromium.close()


def wait_ready(page: Any) -> None:
    """Wait until the shell has rendered the current page (``main[data-state=ready]``)."""
    page.wait_for_selector("main[data-state=ready]")


def screenshot(page: Any, name: str) -> Path:
    """Save the page as ``docs/studio/<name>.png`` (temp name, then rename)."""
    DOCS.mkdir(parents=True, exist_ok=True)
    out = DOCS / f"{name}.png"
    tmp = out.with_suffix(".png.tmp")
    tmp.write_bytes(page.screenshot(full_page=False))
    os.replace(tmp, out)
    return out
