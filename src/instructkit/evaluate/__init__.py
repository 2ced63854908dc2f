"""Evaluation: metrics, the code-execution sandbox, batched generation, before/after reports."""
