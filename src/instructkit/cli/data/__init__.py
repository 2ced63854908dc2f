"""``instructkit data``: convert between formats, show a file, inspect loss masks, curate, stats, and build
instruction data from task records (template, mixture). One module per command family; each registers its
commands on ``app`` (``app.py``)."""

from instructkit.cli.data import convert, curate, tasks  # noqa: F401  (they register their commands)
from instructkit.cli.data.app import app
from instructkit.cli.data.common import shown

__all__ = ["app", "shown"]
