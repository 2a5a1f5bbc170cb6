"""Each retraining trigger fires exactly when it should, and not otherwise; alerts retrain once per episode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.config import Settings
from pipeline.episodes import Episode, advance
from pipeline.triggers import retrain_alerts, retrain_due
from tests.conftest import tiny_config_document, write_toml

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.fixture
def settings(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    from pipeline.config import load_settings

    document = tiny_config_document()
    document["retrain"] = {"every_new_labels": 1000}
    return load_settings(write_toml(tmp_path / "scorehouse.toml", document))


def test_nothing_fires_on_a_quiet_window(settings: Settings) -> None:
    decision = retrain_due(new_labels=10, episodes_retraining=[], settings=settings)
    assert not decision.due and decision.fired == [] and decision.summary == "no trigger fired"


@pytest.mark.parametrize(("labels", "fires"), [(999, False), (1000, True), (2500, True)])
def test_every_k_labels(settings: Settings, labels: int, fires: bool) -> None:
    decision = retrain_due(new_labels=labels, episodes_retraining=[], settings=settings)
    assert ("labels" in decision.fired) is fires and decision.due is fires


def test_an_episode_that_retrains_makes_retraining_due(settings: Settings) -> None:
    decision = retrain_due(new_labels=0, episodes_retraining=["prediction_drift"], settings=settings)
    assert decision.fired == ["prediction_drift"] and "prediction drift alert episode" in decision.summary


def test_switches_choose_which_alerts_retrain(settings: Settings) -> None:
    assert retrain_alerts(settings) == {"drift", "prediction_drift", "quality"}  # any drift alert counts
    quiet = settings.model_copy(update={"retrain": settings.retrain.model_copy(update={"on_drift": False})})
    assert retrain_alerts(quiet) == {"quality"}


def step(open_: dict[str, Episode], firing: dict[str, str], *, now: datetime = NOW, last: datetime | None = None):  # type: ignore[no-untyped-def]
    return advance(
        open_,
        firing,
        now=now,
        report_id="r1",
        retrain_on=frozenset({"drift", "quality"}),
        last_retrain_at=last,
        cooldown=DAY,
    )


def test_an_alert_opens_one_episode_and_retrains_once() -> None:
    first = step({}, {"drift": "x0 drifted"})
    assert [(e.event, e.alert) for e in first.events] == [("opened", "drift"), ("retrain", "drift")]
    assert first.retrain_for == ["drift"]
    again = step(first.open, {"drift": "x0 still drifted"}, now=NOW + 2 * DAY)
    assert again.events == [] and again.retrain_for == []  # still open: no new alarm, no second retrain
    assert again.open["drift"].episode_id == first.open["drift"].episode_id


def test_an_episode_closes_when_the_condition_clears_and_a_new_one_can_open() -> None:
    first = step({}, {"quality": "dropped"})
    cleared = step(first.open, {}, now=NOW + DAY)
    assert [(e.event, e.alert) for e in cleared.events] == [("resolved", "quality")] and cleared.open == {}
    reopened = step(cleared.open, {"quality": "dropped again"}, now=NOW + 3 * DAY)
    assert reopened.events[0].event == "opened" and reopened.retrain_for == ["quality"]


def test_the_cool_down_delays_the_retrain_of_an_episode_until_it_ends() -> None:
    during = step({}, {"drift": "d"}, last=NOW - timedelta(hours=2))
    assert [e.event for e in during.events] == ["opened"] and during.retrain_for == []
    later = step(during.open, {"drift": "d"}, now=NOW + DAY, last=NOW - timedelta(hours=2))
    assert later.retrain_for == ["drift"] and [e.event for e in later.events] == ["retrain"]


def test_an_alert_that_does_not_retrain_still_opens_an_episode() -> None:
    result = step({}, {"prediction_drift": "score moved"})
    assert [e.event for e in result.events] == ["opened"] and result.retrain_for == []
