"""Data over records. Steps, each a small registered class (``base.py``): ``filters.py``, ``normalize.py``,
``pii.py``, ``dedup/`` (the steps beside their MinHash engine) and ``decontam/`` (the step beside its n-gram
index); ``pipeline.py`` runs them, counts drops per reason and writes the rejects; ``split.py``, ``card.py``
and ``stats.py`` (``data show``/``data stats``) work on the result.

Every module below this package is imported here, so a step registers itself by being a module here with
``@register`` (``data/base.py``); nothing else lists the steps.
"""

import importlib
import pkgutil

for _module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    importlib.import_module(_module.name)
