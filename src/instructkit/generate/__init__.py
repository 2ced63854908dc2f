"""Automatic instruction generation (issue #11): LLM backends with a request cache, and the generators
(Self-Instruct, Evol-Instruct, execution-checked code). Built so far: see the modules in this package;
the ``instructkit generate`` command does not exist yet."""
