"""The one timestamp format people see: RFC 3339 in UTC, to the millisecond, with a Z.

The API's `claimed_at`, the saga payload and every time the replay tool prints use it.
Milliseconds are what MongoDB keeps of a time, so nothing shown is finer than what is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime


def to_the_millisecond(moment: datetime) -> datetime:
    """The moment as MongoDB keeps it: what is stored is what a client is told."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rfc3339_at(epoch_seconds: float) -> str:
    return rfc3339(datetime.fromtimestamp(epoch_seconds, UTC))
