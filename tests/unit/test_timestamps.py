"""The millisecond rule: what MongoDB keeps of a time is what anyone is shown."""

from __future__ import annotations

from datetime import UTC, datetime

from sagas.timestamps import rfc3339, to_the_millisecond


def test_a_moment_is_cut_to_the_millisecond_and_shown_as_stored():
    moment = datetime(2026, 11, 28, 10, 0, 0, 123_999, tzinfo=UTC)
    cut = to_the_millisecond(moment)
    assert cut == datetime(2026, 11, 28, 10, 0, 0, 123_000, tzinfo=UTC)
    assert rfc3339(cut) == rfc3339(moment) == "2026-11-28T10:00:00.123Z"
