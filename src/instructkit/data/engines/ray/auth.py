"""Token authentication for the local Ray cluster the engine starts for one run."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@contextlib.contextmanager
def run_token() -> Iterator[None]:
    """Token authentication for a local cluster started for one run, with a fresh token that lives in this
    process's environment (inherited by the cluster's processes) and nowhere on disk; the environment is
    restored after.

    Without it, Ray (2.60 here) turns token authentication on for a new local cluster and, finding no
    token, writes one to ``~/.ray/auth_token`` for good. Every later ``ray start --head`` on the machine
    then finds that file and requires the token, while ``ray start --address`` does not send it: the
    user's own cluster fails to join with InvalidAuthToken until the file is deleted.
    ``RAY_AUTH_MODE=disabled`` set by the user is kept (no token then); ``RAY_AUTH_TOKEN_PATH`` is set
    aside for the run (Ray writes the default path, not that one, when its file is missing)."""
    import secrets

    saved = {k: os.environ.get(k) for k in AUTH_ENV}
    if (saved["RAY_AUTH_MODE"] or "").lower() != "disabled":
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    _reload_auth()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _reload_auth()


def _reload_auth() -> None:
    """Make this process's Ray read the authentication settings from the environment again (its config
    and its token are cached); a Ray without token authentication has nothing to reload."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
