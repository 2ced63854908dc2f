"""The studio's export API (not built yet: this router has no routes)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
