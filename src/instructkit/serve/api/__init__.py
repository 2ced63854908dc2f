"""The HTTP side of ``instructkit serve``: an OpenAI-compatible API (FastAPI) over the batching engine.

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (``completions``; ``stream: true``
answers with server-sent events ending ``data: [DONE]``), ``GET /v1/models`` (the base and every adapter,
each a ``model`` id) and ``GET /health`` (``models``), and ``GET /`` (the chat page: ``page``). Every
request's generation runs on the engine's thread, so the event loop only moves bytes (``generation``).

Safe by default: with an API key every request but the static page needs ``Authorization: Bearer KEY``
(compared in constant time); the body size, message count, prompt tokens and ``max_tokens`` are capped
(``state``); request bodies are checked strictly (``protocol``: ``"max_tokens": true`` or ``"stream":
"yes"`` is refused, not coerced); errors come back in OpenAI's shape ``{"error": {"message", "type",
"param", "code"}}`` and never carry a stack trace (``errors``); one log line per request, with the status
sent, without prompt text unless ``log_prompts`` is set (``access_log``). ``instructkit.serve.server``
puts these together (``build_app``) and runs them.
"""
