"""Benchmark decontamination: the step (``step.py``, ``decontaminate`` in a curate config) and the n-gram
index engine it runs on (``index.py``)."""
