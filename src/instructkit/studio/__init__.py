"""``instructkit studio``: a local web app over run folders — runs, data, training live, chat and export.

The studio only reads and writes under its ``--runs`` folder (:mod:`instructkit.studio.paths`), listens on
127.0.0.1 by default and wants an API key on any other address (:mod:`instructkit.studio.app`). Its pages
are static HTML and JavaScript shipped in ``studio/static/`` (no build step); each page talks to one
router of ``studio/api/``.
"""
