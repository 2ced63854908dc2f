"""``instructkit serve``'s options are ServerConfig's fields: the same defaults, the field docs as help."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from instructkit.serve.config import ServerConfig, field_docs


def _options() -> dict[str, Any]:
    from instructkit.cli import app

    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    return {p.name: p for p in serve.params if p.param_type_name == "option"}


def test_every_setting_is_an_option_with_the_config_default_and_doc() -> None:
    options = _options()
    docs = field_docs(ServerConfig)
    fields = [f for f in dataclasses.fields(ServerConfig) if f.name != "retry_after"]  # no option of its own
    for f in fields:
        option = options[f.name]
        assert option.opts == ["--" + f.name.replace("_", "-")]
        if f.default is True:  # on by default: --no-NAME turns it off
            assert option.secondary_opts == ["--no-" + f.name.replace("_", "-")]
        assert option.default == f.default, f.name
        assert option.help and option.help.startswith(docs[f.name].replace("``", "")[:40]), f.name


def _served_config(monkeypatch: pytest.MonkeyPatch, *args: str) -> ServerConfig:
    """The ServerConfig ``instructkit serve tiny ARGS`` hands the server (no model loaded, nothing served)."""
    import instructkit.serve.loading as loading
    import instructkit.serve.server as server_module
    from instructkit.cli import app

    calls: list[Any] = []

    class Fake:
        names = ["tiny"]

    monkeypatch.delenv("INSTRUCTKIT_API_KEY", raising=False)
    monkeypatch.setattr(loading, "load_served", lambda *a, **kw: Fake())
    monkeypatch.setattr(server_module, "run_server", lambda served, cfg: calls.append(cfg))
    result = CliRunner().invoke(app, ["serve", "tiny", *args], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    return calls[0]


def test_no_options_serve_the_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _served_config(monkeypatch) == ServerConfig()


def test_a_setting_on_by_default_turns_off_with_no(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _served_config(monkeypatch, "--no-packed-weights") == ServerConfig(packed_weights=False)
