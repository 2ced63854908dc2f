"""The README's Studio section shows every studio page, in pictures the browser tests take: each page route
has a screenshot the README shows, each screenshot a test takes is in the README, and each is a 1280×800
PNG on disk."""

from __future__ import annotations

import re
import struct
from pathlib import Path

ROOT = Path(__file__).parent.parent
PAGES = ROOT / "src" / "instructkit" / "studio" / "static" / "pages"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_every_page_has_its_screenshot_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    routes = {m for p in PAGES.glob("*.js") for m in re.findall(r'studio\.route\("([\w-]+)"', p.read_text())}
    assert {"runs", "run", "compare", "data", "train", "chat", "export"} <= routes
    shown = set(re.findall(r"\]\(docs/studio/([\w-]+)\.png\)", readme))
    taken = {
        m for p in (ROOT / "tests").glob("test_studio*_browser.py")
        for m in re.findall(r'screenshot\(page, "([\w-]+)"\)', p.read_text())
    }  # fmt: skip
    assert routes <= shown, f"pages without a README picture: {sorted(routes - shown)}"
    assert taken == shown, (
        f"taken, not shown: {sorted(taken - shown)}; shown, not taken: {sorted(shown - taken)}"
    )
    for name in shown:
        assert png_size(ROOT / "docs" / "studio" / f"{name}.png") == (1280, 800), name
