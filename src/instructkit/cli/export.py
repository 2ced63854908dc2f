"""``instructkit export RUN_DIR -o OUT [--merge] [--format hf|gguf] [--dtype float32|float16|bfloat16]``:
a trained run as a standalone model (a Hugging Face folder or a GGUF file), verified before it is written."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from instructkit.cli.common import console, err_console, user_errors
from instructkit.files import WriteError
from instructkit.models import ModelNotFoundError


def export(
    run_dir: Path = typer.Argument(..., help="A trained run folder (or its model/ folder)."),
    out: Path = typer.Option(
        ..., "--output", "-o", help="Output: a model folder (--format hf) or a .gguf file (--format gguf)."
    ),
    merge: bool = typer.Option(
        False,
        "--merge",
        help="Fold a lora / ln-tuning update into the base weights (adapter and prompt-tuning cannot merge; "
        "full, freeze and bitfit runs need no merge).",
    ),
    fmt: str = typer.Option("hf", "--format", help="hf: Hugging Face folder; gguf: one GGUF file (Llama)."),
    dtype: str = typer.Option("float32", "--dtype", help="Weights as float32, float16 or bfloat16."),
) -> None:
    """Export a trained run; the export is reloaded with plain transformers and its logits compared with the
    trained model's on fixed prompts before it is written (a mismatch writes nothing)."""
    from instructkit.serve.export import ExportError, export_run
    from instructkit.train.methods import MethodError

    def log(msg: str) -> None:
        err_console.print(escape(msg), highlight=False)

    with user_errors(ExportError, MethodError, ModelNotFoundError, WriteError):
        result = export_run(run_dir, out, merge=merge, fmt=fmt, dtype=dtype, log=log)
    console.print(escape(result.summary()), highlight=False)
