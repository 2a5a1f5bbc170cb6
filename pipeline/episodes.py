"""Alert episodes: an alert opens once, stays open while its condition holds, and closes when it clears.

The monitor runs every cycle over overlapping windows, so one drift is seen many times; counting
each sighting as a new alarm (and a new retrain) repeats the test until it fires. Here a sighting
only opens an episode when none is open for that alert, and retraining fires once per episode, and
not within `cooldown` of the last retrain (an episode opened during the cool-down retrains when it
ends, if still open).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

OPENED, RETRAIN, RESOLVED = "opened", "retrain", "resolved"


@dataclass(frozen=True, kw_only=True)
class Episode:
    """An open episode of one alert."""

    alert: str  # drift | prediction_drift | quality
    episode_id: str
    opened_at: datetime
    retrained: bool = False


@dataclass(frozen=True, kw_only=True)
class EpisodeEvent:
    alert: str
    episode_id: str
    event: str  # opened | retrain | resolved
    detail: str


@dataclass(frozen=True)
class Step:
    """What one monitoring run changed: the events to store, the episodes open after it, and the retrain."""

    events: list[EpisodeEvent] = field(default_factory=list)
    open: dict[str, Episode] = field(default_factory=dict)
    retrain_for: list[str] = field(default_factory=list)  # alerts whose episode retrains now


def advance(
    open_episodes: Mapping[str, Episode],
    firing: Mapping[str, str],
    *,
    now: datetime,
    report_id: str,
    retrain_on: frozenset[str],
    last_retrain_at: datetime | None,
    cooldown: timedelta,
) -> Step:
    """Apply one run's alerts (`firing`: alert -> sentence) to the open episodes."""
    step = Step()
    for alert, episode in open_episodes.items():
        if alert not in firing:
            step.events.append(
                EpisodeEvent(alert=alert, episode_id=episode.episode_id, event=RESOLVED, detail="cleared")
            )
        else:
            step.open[alert] = episode
    for alert, detail in firing.items():
        if alert not in step.open:
            episode = Episode(alert=alert, episode_id=f"{alert}-{report_id}", opened_at=now)
            step.open[alert] = episode
            step.events.append(EpisodeEvent(alert=alert, episode_id=episode.episode_id, event=OPENED, detail=detail))
    cooling = last_retrain_at is not None and now - last_retrain_at < cooldown
    waiting = [a for a, e in sorted(step.open.items()) if a in retrain_on and not e.retrained]
    if waiting and not cooling:  # one retrain serves every episode open now
        for alert in waiting:
            episode = step.open[alert]
            step.open[alert] = replace(episode, retrained=True)
            step.retrain_for.append(alert)
            step.events.append(
                EpisodeEvent(alert=alert, episode_id=episode.episode_id, event=RETRAIN, detail=firing[alert])
            )
    return step
