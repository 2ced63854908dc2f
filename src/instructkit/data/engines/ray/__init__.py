"""The Ray engine of ``instructkit data curate``: the same step objects, the same decisions, on a Ray cluster.

``curate(..., CurateConfig(engine="ray"))`` writes byte-identical train/val/test/rejects files and the
same card counts as the local engine. Every record carries ``idx``, its place in the input (input file
number << 40 | position in the file), so "first" and "input order" mean what they mean locally wherever
the record travels. The driver holds counts, the merged near-duplicate pairs (a few bytes per
near-duplicate) and, during the split only, a compact unit table (28 bytes per kept record); for outputs
other than plain .jsonl, also the split being written. Its memory is flat in the input's size otherwise
(measured: a peak of 158 MiB private at 100,000 records and 159 MiB at 300,000).

Stages (a block is an Arrow table ``idx, rec, stepno, reason, rej``; ``rec`` the record as JSON;
``blocks.py``), run by ``curate.py``:

* read and per-record steps (Filter, Mapper; consecutive ones fused): ``read.py``, Ray Data tasks running
  the local reader and :func:`~instructkit.data.base.checked_verdict`; what a step declares in
  ``Step.ray_broadcast`` (decontaminate's index) is built once on the driver and sent to each worker once.
* a whole-dataset step: its own Ray form, ``DatasetStep.ray_stage`` (exact_dedup: a hash shuffle on the
  key's normalized hash, ``data/dedup/ray_exact.py``; near_dedup: the distributed MinHash-LSH,
  ``data/dedup/ray_near.py``). A dataset step without one is refused with the engine named.
* split: ``split.py``, the assignment both engines use, computed on the driver over a compact unit table
  and applied by the workers as two hash bounds per stratum.
* write: ``write.py``, a range partition on ``idx`` (exact quantiles; each partition sorted in a task),
  streamed through the driver into the split files one partition at a time; the rejects likewise by
  ``(step, idx)``.

Hand-written shuffles, ordered reads and bars, and why: ``engine.py``. ``auth.py``: the token of a local
cluster started for one run.
"""
