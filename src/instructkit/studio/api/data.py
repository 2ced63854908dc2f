"""The studio's data API (not built yet: this router has no routes)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
