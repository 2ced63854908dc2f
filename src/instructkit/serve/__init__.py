"""Using a model: one-shot replies now; the server, REPL and export come later."""
