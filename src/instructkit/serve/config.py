"""The server's settings: :class:`ServerConfig`, its limits and switches, each field documented.

The CLI (``instructkit serve``) builds one option per field from this dataclass, its default and the
first paragraph of its docstring as the option's help, so a default is written only here. This module
imports nothing heavy: the CLI reads it at start-up.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass


@dataclass
class ServerConfig:
    """Limits and switches of one server; the CLI's options map 1:1 onto these fields."""

    host: str = "127.0.0.1"
    """Address to listen on; anything but a loopback address exposes the model to the network."""
    port: int = 8000
    """Port to listen on."""
    api_key: str | None = None
    """When set, every API request needs ``Authorization: Bearer <api_key>``; unset (None), the server takes
    requests without one. An empty or blank key is refused (it would let an empty token in), and so is one
    an HTTP header cannot carry as given (surrounding whitespace, characters other than printable ASCII)."""
    max_batch: int = 8
    """Requests decoded together in one forward pass (per adapter); 1 serves one request at a time."""
    max_queue: int = 64
    """Requests that may wait for a free slot; one more is answered 429 with Retry-After."""
    prefix_cache_mb: float = 256
    """Memory for recent prompts' key/value states (per adapter), so a prompt sharing a start with an
    earlier one (the chat template's system turn, a repeated question) prefills only the rest; 0 turns
    it off. The bundled model keeps about 46 KB per prompt token (fp32)."""
    draft_tokens: int = 2
    """Prompt-lookup draft tokens per greedy request and decoding step (n-gram speculation: the tokens that
    followed the last 2-3 tokens' earlier occurrence in the prompt or reply); a step checks them in the same
    forward pass and keeps those greedy decoding would pick, so replies do not change; 0 turns it off."""
    suffix_draft_tokens: int = 16
    """Most draft tokens per greedy request and step taken from earlier requests' prompts and replies
    (suffix speculation: where the request's last 8+ tokens occurred before, what followed them there; at
    most as many tokens as the match is long). Repeated traffic (the same question again, evaluation
    sets, retries) then decodes several tokens per step; checked like any draft, so replies do not
    change; 0 turns it off."""
    packed_weights: bool = True
    """On a CPU, run the model's fp32 linear layers on oneDNN's prepacked weights (about half the time per
    decoding step of a few rows). The products are summed in another order than plain ``linear``'s, as a
    batch of another size is, so a greedy reply changes only where two tokens' scores tie to the last
    bits (none of 128 distinct prompts in the load benchmark); ``--no-packed-weights`` turns it off."""
    max_body_bytes: int = 1_000_000
    """Largest request body (413 beyond)."""
    max_messages: int = 128
    """Most messages in one chat request."""
    max_prompt_tokens: int | None = None
    """Longest prompt in tokens; unset (None): the model's context length minus one."""
    max_tokens: int = 2048
    """Largest ``max_tokens`` a request may ask for."""
    default_max_tokens: int = 512
    """``max_tokens`` when a request does not say."""
    retry_after: int = 1
    """Seconds a 429 answer asks the client to wait."""
    log_prompts: bool = False
    """Put the prompt text in the request log line (off: it may hold private data)."""

    def __post_init__(self) -> None:
        key = self.api_key
        if key is None:
            return
        if not key.strip():
            raise ValueError(
                "the API key is empty: clients could authenticate with an empty Bearer token; give a real "
                "key, or none to serve without one"
            )
        if key != key.strip():
            raise ValueError(
                "the API key starts or ends with whitespace, which HTTP strips from the Authorization "
                "header, so no client could send it; remove the whitespace"
            )
        if not all(" " <= c <= "~" for c in key):
            raise ValueError(
                "the API key holds characters other than printable ASCII, which an Authorization header "
                "cannot carry reliably; use letters, digits and punctuation"
            )


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls`` (read from its source: Python keeps no attribute
    docstrings), whitespace folded to single spaces; fields without one are left out."""
    body = ast.parse(inspect.getsource(cls)).body[0]
    assert isinstance(body, ast.ClassDef)
    docs = {}
    for node, after in zip(body.body, body.body[1:], strict=False):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if (
            isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs
