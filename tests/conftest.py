from __future__ import annotations

from pathlib import Path

import pytest

from instructkit.records import Record

FIXTURES = Path(__file__).parent / "fixtures"


def without_source(rec: Record) -> Record:
    """A record minus meta.source (the file it was read from, which a round trip changes)."""
    meta = {k: v for k, v in rec.meta.items() if k != "source"}
    return Record(rec.messages, rec.tokens, rec.tags, rec.text, rec.label, meta)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES
