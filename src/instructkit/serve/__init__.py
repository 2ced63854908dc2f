"""Using a model: the OpenAI-compatible server with continuous batching (``server``, which assembles the HTTP
parts in ``api`` under the settings in ``config``, over ``instructkit.decoding``'s engine), the terminal chat
(``chat``), the chat page (``page.html``), and loading a model with its adapters (``loading``)."""
