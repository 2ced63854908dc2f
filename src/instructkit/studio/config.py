"""The studio's settings, each field documented; ``instructkit studio``'s options map 1:1 onto them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StudioConfig:
    """Where the studio looks and how it listens."""

    runs: str = "runs"
    """The folder of run folders the studio shows; it reads and writes nothing outside it."""
    host: str = "127.0.0.1"
    """Address to listen on. Anything but a loopback address needs ``api_key``: the studio starts training
    jobs and reads every file under ``runs``."""
    port: int = 7860
    """Port to listen on (0: a free one)."""
    api_key: str | None = None
    """When set, every API request needs ``Authorization: Bearer <api_key>`` (the page asks for it once per
    tab); required when ``host`` is not a loopback address."""
    max_jobs: int = 1
    """Jobs (run, train, continual, generate) the studio runs at once; one more is refused until one ends."""
    max_body_bytes: int = 1_000_000
    """Largest request body (413 beyond)."""

    def __post_init__(self) -> None:
        from instructkit.serve.config import ServerConfig
        from instructkit.serve.server import is_loopback

        if self.api_key is not None:
            ServerConfig(
                api_key=self.api_key
            )  # the same checks as serve's key: not blank, sendable in a header
        if not is_loopback(self.host) and self.api_key is None:
            raise ValueError(
                f"--host {self.host} is not a loopback address: the studio starts jobs and reads every run "
                "there, so it needs --api-key (or INSTRUCTKIT_API_KEY) on any other address"
            )
        if self.max_jobs < 1:
            raise ValueError("max_jobs must be at least 1")
