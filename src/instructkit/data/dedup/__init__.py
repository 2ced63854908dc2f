"""Deduplication: the steps (``steps.py``: ``exact_dedup`` and ``near_dedup``), the text they compare
(``keys.py``), the MinHash/LSH engine they run on (``near_dup.py``) and their Ray forms (``ray_exact.py``,
``ray_near.py``: ``DatasetStep.ray_stage``)."""
