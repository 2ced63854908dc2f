"""Data over records. Steps, each a small registered class (``base.py``): ``filters.py``, ``normalize.py``,
``pii.py``, ``instruction_filters.py`` (Self-Instruct's filters of generated instructions, the ROUGE-L
novelty one on the index in ``similarity.py``), ``dedup/`` (the steps beside their MinHash engine and
their Ray forms) and ``decontam/`` (the step beside its n-gram index). ``pipeline.py`` is curate's front
door: it checks a ``curate_config.py`` config and hands it to an engine (``engines/``: local or Ray),
which runs the steps, counts drops per reason, writes the rejects and the card; ``split.py``, ``card.py``
and ``stats.py`` (``data show``/``data stats``) work on the result.

Every module below this package is imported here, so a step registers itself by being a module here with
``@register`` (``data/base.py``); nothing else lists the steps, and ``import instructkit.data`` alone
registers every one (``tests/test_data_registry.py``).
"""

import importlib
import pkgutil

for _module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    importlib.import_module(_module.name)
