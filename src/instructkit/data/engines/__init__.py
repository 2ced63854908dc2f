"""The engines that run a curate config (``data.pipeline.curate`` picks one by ``engine``).

* ``local.py``: this process (and ``num_proc`` workers for per-record steps), records in a Hugging Face
  ``Dataset``.
* ``ray/``: a Ray cluster, with byte-identical train/val/test/rejects files and the same card counts.

What both share, so their outputs compare byte for byte: the step objects and :func:`verdict_of`
(``data/base.py``), the split assignment (``data/split.py``: one numpy function), the accounting of every
record (``accounting.py``: reject rows, source rows, the card) and the output folder replaced as a unit
(``folder.py``). A whole-dataset step brings its own Ray form (``DatasetStep.ray_stage``; a per-record
step declares what to broadcast in ``Step.ray_broadcast``), so neither engine names a step class.
"""
