"""What a backfill may be asked: a moment to score from, and a version that is not the champion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time

SINCE_FORMAT = "2026-11-20 or 2026-11-20T09:00Z"


class BackfillError(ValueError):
    """A backfill asked for something it cannot do; the message says what to give instead."""


def parse_since(text: str) -> datetime:
    """`--since` as a moment in UTC: a day (its start, UTC) or an ISO 8601 time (without an offset: UTC)."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BackfillError(f"--since {text!r} is not a date; write it like {SINCE_FORMAT}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_since(since: datetime, now: datetime) -> datetime:
    """`since` in UTC, refused when it is in the future (nothing has arrived after it yet)."""
    moment = since if since.tzinfo else since.replace(tzinfo=UTC)
    if moment > now:
        raise BackfillError(
            f"--since {moment:%Y-%m-%d %H:%M} UTC is in the future (now {now:%Y-%m-%d %H:%M} UTC): "
            "no record has arrived after it; give a past date"
        )
    return moment.astimezone(UTC)


def check_version(version: str, registered: Sequence[str], champion: str | None) -> None:
    """Refuse a version that is not registered, or the champion (its own scoring covers every record)."""
    if version not in registered:
        known = ", ".join(registered) or "none yet"
        raise BackfillError(
            f"{version!r} is not a registered model version (registered: {known}); pick one of those, or train it first"
        )
    if version == champion:
        raise BackfillError(
            f"{version} is the champion: `scorehouse score` scores every record it has not scored; "
            "backfill another version"
        )
