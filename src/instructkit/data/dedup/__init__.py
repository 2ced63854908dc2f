"""Deduplication: the steps (``steps.py``: ``dedup`` exact and near) and the MinHash/LSH engine they run on
(``near_dup.py``)."""
