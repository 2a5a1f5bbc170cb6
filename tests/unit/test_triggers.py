"""Each retraining trigger fires exactly when it should, and not otherwise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.triggers import Measured, measure_quality, quality_dropped, retrain_due
from tests.conftest import tiny_config_document, write_toml


@pytest.fixture
def settings(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    from pipeline.config import load_settings

    document = tiny_config_document()
    document["monitoring"] = {"drift_share_threshold": 0.5, "max_quality_drop": 0.05, "min_labels": 100}
    document["retrain"] = {"every_new_labels": 1000}
    return load_settings(write_toml(tmp_path / "scorehouse.toml", document))


CHAMPION = Measured(value=0.80, low=0.78, high=0.82, labels=1000)
STEADY = Measured(value=0.79, low=0.77, high=0.81, labels=1000)


def due(settings: Settings, **changes: object):  # type: ignore[no-untyped-def]
    arguments = {"new_labels": 10, "drifted_share": 0.1, "quality": STEADY, "champion_quality": CHAMPION}
    arguments.update(changes)
    return retrain_due(settings=settings, **arguments)  # type: ignore[arg-type]


def test_nothing_fires_on_a_quiet_window(settings: Settings) -> None:
    decision = due(settings)
    assert not decision.due and decision.fired == [] and decision.summary == "no trigger fired"


@pytest.mark.parametrize(("labels", "fires"), [(999, False), (1000, True), (2500, True)])
def test_every_k_labels(settings: Settings, labels: int, fires: bool) -> None:
    decision = due(settings, new_labels=labels)
    assert ("labels" in decision.fired) is fires
    assert decision.due is fires


@pytest.mark.parametrize(("share", "fires"), [(0.5, False), (0.51, True), (1.0, True)])
def test_drift_share_strictly_above_the_threshold(settings: Settings, share: float, fires: bool) -> None:
    assert ("drift" in due(settings, drifted_share=share).fired) is fires


def test_drift_trigger_can_be_switched_off(settings: Settings) -> None:
    quiet = settings.model_copy(update={"retrain": settings.retrain.model_copy(update={"on_drift": False})})
    assert not due(quiet, drifted_share=0.9).due


def test_a_real_quality_drop_fires(settings: Settings) -> None:
    dropped = Measured(value=0.70, low=0.66, high=0.74, labels=500)
    decision = due(settings, quality=dropped)
    assert decision.fired == ["quality"]
    assert "0.700 on 500 labels" in decision.reasons[0]


def test_a_drop_within_noise_does_not_fire(settings: Settings) -> None:
    # More than max_quality_drop below, but the intervals overlap: not beyond noise.
    noisy = Measured(value=0.72, low=0.62, high=0.79, labels=500)
    assert not quality_dropped(noisy, CHAMPION, settings)


def test_a_drop_on_too_few_labels_does_not_fire(settings: Settings) -> None:
    few = Measured(value=0.50, low=0.45, high=0.55, labels=99)
    assert not quality_dropped(few, CHAMPION, settings)


def test_a_small_drop_does_not_fire(settings: Settings) -> None:
    slight = Measured(value=0.76, low=0.755, high=0.765, labels=5000)
    assert not quality_dropped(slight, CHAMPION, settings)


def test_undefined_quality_never_fires(settings: Settings) -> None:
    undefined = Measured(value=math.nan, low=math.nan, high=math.nan, labels=500)
    assert not quality_dropped(undefined, CHAMPION, settings)


def test_measure_quality_interval_brackets_the_value() -> None:
    rng = np.random.default_rng(3)
    scores = rng.uniform(size=800)
    labels = (rng.uniform(size=800) < scores).astype(int)
    measured = measure_quality(labels, scores, 0.5, "roc_auc", seed=0)
    assert measured.low < measured.value < measured.high
    assert measured.labels == 800
    assert measure_quality(np.array([]), np.array([]), 0.5, "roc_auc", seed=0).labels == 0
