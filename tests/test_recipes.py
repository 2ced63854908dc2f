"""Every shipped recipe parses into its config and builds (STYLE 5: found recursively)."""

from __future__ import annotations

from pathlib import Path

import pytest

from instructkit.data.pipeline import CurateConfig

RECIPES = sorted((Path(__file__).parent.parent / "recipes").rglob("*.yaml"))


def test_recipes_exist() -> None:
    assert len(RECIPES) >= 2


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_builds(path: Path) -> None:
    if path.name.startswith("curate"):
        cfg = CurateConfig.from_yaml(path)
        steps = cfg.build_steps()
        assert steps and all(s.name for s in steps)
    else:  # pragma: no cover - a new recipe kind must add its own branch here
        pytest.fail(f"no config type known for recipe {path.name}")
