"""The studio's jobs API (not built yet: this router has no routes)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
