"""The chat and export pages in headless Chromium: the streamed greedy reply equals `instructkit chat`'s,
two runs answer one prompt side by side, and an export shows "verified" (screenshots ``chat``, ``export``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.studio_browser import screenshot, studio_page, wait_ready
from tests.test_studio_chat import PROMPT, N, cli_reply

pytestmark = [pytest.mark.slow, pytest.mark.requires_browser]


def test_chat_one_run_then_two_side_by_side(studio_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {run: cli_reply(studio_root, run, monkeypatch) for run in ("a", "b")}
    with studio_page(studio_root) as (page, url):
        page.goto(url + "/#/chat")
        wait_ready(page)
        assert page.is_checked("#chat-run-0") and not page.is_checked("#chat-run-1")  # a, then b
        page.fill("#chat-max-tokens", str(N))
        page.fill("#chat-message", PROMPT)
        page.press("#chat-message", "Control+Enter")  # the keyboard sends
        reply = page.wait_for_selector(".chat-column[data-run=a] .reply[data-state=done]")
        assert reply.query_selector(".text").inner_text().strip() == expected["a"]

        page.check("#chat-run-1")
        page.click("#chat-reset")
        assert page.locator(".chat-column").count() == 2
        page.fill("#chat-message", PROMPT)
        page.click("#chat-send")
        for run in ("a", "b"):
            done = page.wait_for_selector(f".chat-column[data-run={run}] .reply[data-state=done]")
            assert done.query_selector(".text").inner_text().strip() == expected[run]
        page.wait_for_selector("#chat-form:not([data-state=sending])")
        screenshot(page, "chat")


def test_export_shows_verified(studio_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(studio_root, runs)
    with studio_page(runs) as (page, url):
        page.goto(url + "/#/export?path=a")
        wait_ready(page)
        assert page.input_value("#export-path") == "a" and page.input_value("#export-format") == "hf"
        assert page.input_value("#export-out") == "exports/a-merged"
        page.click("#export-start")
        result = page.wait_for_selector("#export-result[data-verified=true]")
        assert "verified" in result.inner_text() and "exports/a-merged" in result.inner_text()
        assert (runs / "exports" / "a-merged" / "instructkit.json").is_file()
        screenshot(page, "export")
