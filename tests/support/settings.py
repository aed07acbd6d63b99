"""Settings as a test changes them: checked the way the service checks its own at start."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from orchestrator.settings import Settings


def changed(settings: Settings, update: Mapping[str, object]) -> Settings:
    """`settings` with `update`, refused (ValidationError) where the service would refuse
    them at start. `model_copy` checks nothing, so a test could otherwise run the gateway
    in-process under timings its own start-up would reject."""
    return Settings.model_validate(settings.model_dump() | dict(update))


def on_database(url: str, database: str) -> str:
    """`url` naming another database on the same server(s), its options kept (several
    hosts need their target_session_attrs)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))
