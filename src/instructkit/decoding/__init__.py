"""Decoding: the one engine every local reply comes from, below eval, generation, serve and continual.

* ``engine/``: continuous batching for causal LMs (requests, sampling, key/value buffers, packed attention,
  the prefix cache, drafts, oneDNN-packed linear layers, the runner and the scheduler). ``instructkit
  serve`` and ``chat`` put requests to it as they arrive.
* ``batch``: many prompts at once (:func:`generate`, :func:`generate_tokens`), fed to the same engine as
  concurrent requests: eval, the ``local`` generation backend, continual scoring and HumanEval sampling.

The batch names are re-exported here (``from instructkit.decoding import Decoding, generate``); the engine's
parts are imported from their modules.
"""

from instructkit.decoding.batch import (
    Decoding,
    generate,
    generate_one_by_one,
    generate_tokens,
    render_prompts,
)

__all__ = ["Decoding", "generate", "generate_one_by_one", "generate_tokens", "render_prompts"]
