"""What a generation card says and keeps out: the backend's settings with every secret redacted (a card is
shared; an API key, a URL's password or a secret query value is written as ``***``), and the card as
Markdown."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from instructkit.generate.backends.base import Backend
from instructkit.generate.cache import CachedBackend

REDACTED = "***"
_SECRET_WORDS = {"key", "token", "secret", "password", "passwd", "auth", "authorization", "credential",
                 "credentials", "cookie", "apikey"}  # fmt: skip


def is_secret_name(name: str) -> bool:
    """Whether a setting named ``name`` holds a secret: a word of it (split at ``_``, ``-``, ``.`` and
    camel case) is key, token, secret, password, auth, ... — so ``api_key``, ``auth_token`` and ``apiKey``
    are, and ``max_tokens_param`` (the word is "tokens") is not."""
    words = (
        re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower().replace("-", "_").replace(".", "_").split("_")
    )
    return any(w in _SECRET_WORDS for w in words)


def redact_url(url: str) -> str:
    """``url`` with its password (``user:pw@host``) and any secret-named query value written as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_secret_name(k) else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redacted(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of a backend's settings fit for a card that is shared: a secret-named value (set) is
    ``***``, a URL loses its password and secret query values; nested mappings are redacted too."""
    out: dict[str, Any] = {}
    for k, v in settings.items():
        if is_secret_name(str(k)) and v is not None:
            out[k] = REDACTED
        elif isinstance(v, dict):
            out[k] = redacted(v)
        elif isinstance(v, str) and "://" in v:
            out[k] = redact_url(v)
        else:
            out[k] = v
    return out


def backend_settings(backend: Backend) -> dict[str, Any]:
    """Every parameter ``backend`` runs with (its name first, defaults included), redacted (:func:`redacted`);
    a value that is not plain data (a test's answering function) is shown by its type."""
    if isinstance(backend, CachedBackend):
        backend = backend.backend
    out: dict[str, Any] = {"name": getattr(backend, "name", type(backend).__name__)}
    if dataclasses.is_dataclass(backend):
        for f in dataclasses.fields(backend):
            if f.init and not f.name.startswith("_"):
                out[f.name] = _plain(getattr(backend, f.name))
    return redacted(out)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return f"<{type(value).__name__}>"


def render_generation_card(card: dict[str, Any], rejects: Sequence[dict[str, Any]] = ()) -> str:
    """The generation card as Markdown (the curate card's accounting and steps tables, plus what the
    backend spent)."""
    s, acc = card["summary"], card["accounting"]
    cost = "-" if s["cost"] is None else f"{s['cost']:.4f}"
    lines = [
        f"# Generated data card: {card['generator']}",
        "",
        f"Made by instructkit {card['instructkit_version']} with backend `{card['backend'].get('backend')}`, "
        f"model `{card['backend'].get('model')}`. Stopped: {card['stopped']}.",
        "",
        "## Accounting",
        "",
        f"**{acc['in']} candidate {s['unit']}s = {acc['kept']} kept + {acc['rejected']} rejected** "
        f"({'balanced' if acc['balanced'] else 'NOT BALANCED'}). Every rejected candidate is in "
        "`rejects.jsonl` with its step and reason"
        + (
            "; its rows with `counted: false` are parts of candidates (instances), counted in their own "
            "steps, outside this sum."
            if any(not r.get("counted", True) for r in rejects)
            else "."
        ),
        "",
        "## Requests",
        "",
        "| requests | sent | cache hits | errors | prompt tokens | completion tokens | cost | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {s['requests']} | {s['sent']} | {s['cache_hits']} | {s['errors']} | {s['prompt_tokens']:,} | "
        f"{s['completion_tokens']:,} | {cost} | {s['seconds']} |",
        "",
        "## Steps",
        "",
        "| step | in | kept | dropped (by reason) |",
        "| --- | --- | --- | --- |",
    ]
    for st in card["steps"]:
        dropped = ", ".join(f"{k} {v}" for k, v in st["dropped"].items()) or "-"
        lines.append(f"| {st['step']} | {st['in']} | {st['kept']} | {dropped} |")
    if card["rejected_by_reason"]:
        lines += ["", "## Rejected, by reason", "", "| reason | candidates |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in card["rejected_by_reason"].items()]
    return "\n".join(lines) + "\n"
