"""The demo's last step: serve the tuned model, ask it twice with the official ``openai`` client, stop.

    python examples/demo_serve.py runs/quickstart/train [--prompt TEXT]

Starts ``instructkit serve MODEL`` on 127.0.0.1 and a free port, waits until it answers, prints one plain
reply and one streamed reply (token by token), and stops the server, whatever happens in between.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"the server did not answer within {timeout:.0f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a trained run folder, model folder or alias")
    ap.add_argument("--prompt", default="Give me one tip for writing clear commit messages.")
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()

    import openai

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "instructkit.cli",
        "serve",
        args.model,
        "--name",
        "demo",
        "--port",
        str(port),
    ]
    print(f"$ instructkit serve {args.model} --name demo --port {port}", flush=True)
    proc = subprocess.Popen(cmd, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    try:
        wait_ready(url, proc)
        client = openai.OpenAI(base_url=url + "/v1", api_key="none")
        messages = [{"role": "user", "content": args.prompt}]
        print(f"models: {[m.id for m in client.models.list()]}")
        print(f"user: {args.prompt}")
        reply = client.chat.completions.create(
            model="demo", messages=messages, max_tokens=args.max_tokens, temperature=0
        )
        print(f"plain reply ({reply.usage.completion_tokens} tokens): {reply.choices[0].message.content}")
        print("streamed reply: ", end="", flush=True)
        stream = client.chat.completions.create(
            model="demo", messages=messages, max_tokens=args.max_tokens, temperature=0, stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
        print()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        print("server stopped")


if __name__ == "__main__":
    main()
