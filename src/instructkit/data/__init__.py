"""Data over records: the curation steps (filter, map, dedup, decontaminate), the pipeline that runs them
(``pipeline.py``), the split, the card and the stats.

Every module below this package is imported here, so a step registers itself by being a module here with
``@register`` (``data/base.py``); nothing else lists the steps.
"""

import importlib
import pkgutil

for _module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    importlib.import_module(_module.name)
