"""Using a model: the OpenAI-compatible server with continuous batching (``server``, ``engine``), the terminal
chat (``chat``), the chat page (``page.html``), and loading a model with its adapters (``loading``)."""
