"""Continuous batching for causal LMs: concurrent requests share each decoding step's forward pass.

One background thread owns the model. Each step is one forward pass per adapter lane over a flat
sequence: every running row's next token, the draft tokens of rows that have some, and the new tokens of
prompts admitted since the last step (each prefilled after the longest prefix it shares with a recent prompt
of the same lane). A finished row (EOS, a stop string, ``max_tokens``, a client gone) leaves the batch at
once and its caller gets the result at once. The parts, named as vLLM names them:

* ``requests``: a request in flight (its tokens, its text handed out as deltas, its result) and the errors
  a caller sees (``QueueFull``, ``EngineStopped``).
* ``sampling``: how a request is decoded (``Sampling``: greedy, temperature, ``top_p``, a seed, stop
  strings) and the choice of each row's next token.
* ``kv_buffers``: a lane's running batch and its key/value cache, in preallocated buffers written in place.
* ``attention``: the packed step's attention plan, plugged into transformers' attention interface.
* ``prefix_cache``: recent prompts' key/value states, reused by prompts that start the same.
* ``drafts``: the two draft proposers (earlier requests' sequences, prompt lookup), checked inside a step.
* ``packed``: the model's fp32 linear layers on oneDNN's prepacked weights while the engine runs on a CPU
  (an 8-row step of the bundled model in about half the time, same replies), given back at ``stop``.
* ``lean``: the packed step's forward pass for Llama models written out, without the per-call work of the
  model's Python code (about 5 ms a step on the bundled model; the same logits to the bit, checked at start).
* ``runner``: the forward passes (packed steps, or separate prefill then decoding), and what each token
  does to its request.
* ``scheduler``: ``Engine``, the queue, admission and the loop.

Why by hand rather than transformers' continuous-batching manager: that one needs paged attention
kernels and a static block budget, does not run adapters side by side, and (5.x) does not take per-row
stop strings. Greedy replies match one-request ``generate`` (the tests compare them token for token).
A model whose attention does not go through the attention interface as ``sdpa`` is batched the older
way: each prompt prefilled in a pass of its own, then merged into the batch.

Requests for different LoRA adapters run in separate *lanes* (one running batch each, stepped in
turn), because the active adapter is a property of the model, not of a row. Sampling is per request
(temperature 0 = greedy, ``top_p``, a seeded ``torch.Generator`` per request, so a seeded reply does
not depend on what else is in the batch). Models whose cache is not a plain per-layer key/value list
(sliding-window or linear-attention layers) are served one request at a time, and say so.

Serve and chat put requests to the engine as they arrive; ``instructkit.decoding.generate`` puts a whole
eval set or generation round to it at once. Import each name from its module (``from
instructkit.decoding.engine.scheduler import Engine``); this package
re-exports nothing, so importing one part does not import the others.
"""
