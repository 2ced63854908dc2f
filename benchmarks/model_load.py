"""Cold (GGUF, dequantized on load) versus cached (safetensors) load of smollm2-135m-instruct.

    python benchmarks/model_load.py

The peer is transformers' own GGUF loading (``from_pretrained(dir, gguf_file=...)``), which is what a
user without instructkit's cache runs every time. Both loads include the tokenizer.
"""

from __future__ import annotations

import time

from transformers import AutoModelForCausalLM, AutoTokenizer

from instructkit.models import load_model, load_tokenizer, prepare, resolve

ALIAS = "smollm2-135m-instruct"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cold() -> None:
    ref = resolve(ALIAS, use_cache=False)
    AutoTokenizer.from_pretrained(ref.path, **ref.kwargs)
    AutoModelForCausalLM.from_pretrained(ref.path, **ref.kwargs)


def cached() -> None:
    load_tokenizer(ALIAS)
    load_model(ALIAS)


def main() -> None:
    prepare(ALIAS)
    cached()  # warm the page cache and imports for both sides alike
    cold_s = min(timed(cold) for _ in range(2))
    cached_s = min(timed(cached) for _ in range(3))
    print(f"cold GGUF load:   {cold_s:7.2f} s")
    print(f"cached load:      {cached_s:7.2f} s")
    print(f"ratio: {cold_s / cached_s:.2f}x cached load vs transformers GGUF load")


if __name__ == "__main__":
    main()
