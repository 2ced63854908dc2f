"""Continual fine-tuning runs: the typed recipe (``recipe``), the round runner (``runner``), round scoring
(``scoring``) and the report with its comparison (``report``). ``instructkit continual RECIPE.yaml``.

A layer of its own beside ``recipe.py``: a round trains (``train``) and scores (``evaluate``), which
neither of those layers may do for the other."""
