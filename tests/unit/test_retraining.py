"""Challengers: trained on the right rows, compared on fresh rows by the paired test, promoted only when they win."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Settings, load_settings
from pipeline.model import ScoringModel, fit_model
from pipeline.retraining import (
    compare,
    own_rows,
    promotion_rule,
    rebuild_training_rows,
    split_for_retraining,
    train_challenger,
)
from tests.conftest import tiny_config_document, write_toml


@pytest.fixture
def settings(tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return load_settings(write_toml(tmp_path / "scorehouse.toml", tiny_config_document()))


def frame(n: int, seed: int) -> pd.DataFrame:
    """Rows where the outcome depends on `amount` (and a little noise)."""
    rng = np.random.default_rng(seed)
    amount = rng.uniform(0, 100, n)
    outcome = np.where(rng.uniform(size=n) < amount / 100, "yes", "no")
    return pd.DataFrame(
        {
            "record_id": [f"r{seed}-{i}" for i in range(n)],
            "amount": amount,
            "rate": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "outcome": outcome,
        }
    )


def fitted(data: pd.DataFrame, settings: Settings, version: str) -> ScoringModel:
    y = (data["outcome"] == "yes").to_numpy(dtype=int)
    return fit_model(data, y, settings.dataset, settings.model, version=version, seed=0)


def test_a_deliberately_weakened_challenger_is_never_promoted(settings: Settings) -> None:
    champion = fitted(frame(600, 1), settings, "v1")
    shuffled = frame(600, 2)
    shuffled["outcome"] = shuffled["outcome"].sample(frac=1, random_state=0).to_numpy()  # labels carry no signal
    weak = fitted(shuffled, settings, "v2")
    holdout = frame(800, 3)
    decision = compare(champion, weak, holdout, settings.dataset, promotion_rule(settings))
    assert not decision.promote
    assert decision.challenger["roc_auc"] < decision.champion["roc_auc"]
    assert decision.reason.startswith("rejected: v2 roc_auc")
    assert "on the same 800 fresh rows" in decision.reason
    test = decision.test  # the decision row stores the interval, the p-value, the rows and positives
    assert test.gain_low < test.gain < test.gain_high and test.p_value > 0.5
    assert test.rows == 800 and test.positives == int((holdout["outcome"] == "yes").sum())


def test_a_better_challenger_is_promoted_and_a_tie_is_not(settings: Settings) -> None:
    blind = frame(600, 1).assign(amount=0.0)  # a champion that never saw the signal
    champion = fitted(blind, settings, "v1")
    better = fitted(frame(600, 2), settings, "v2")
    holdout = frame(800, 3)
    # The blind champion calls nearly everyone positive at the threshold, so its recall is high: the
    # recall guard would (rightly) block; balanced accuracy is the guard that fits this comparison.
    rule = replace(promotion_rule(settings), guard_metric="balanced_accuracy")
    won = compare(champion, better, holdout, settings.dataset, rule)
    assert won.promote and won.test.gain_low > rule.min_improvement and won.test.p_value < rule.alpha
    assert not compare(better, better, holdout, settings.dataset, rule).promote


def _split_inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    base = frame(10, 1).rename(columns={"outcome": "target"})
    reference = base.assign(split=["train"] * 8 + ["holdout"] * 2)
    production = frame(10, 2).rename(columns={"outcome": "target"})
    production["labelled_at"] = pd.date_range("2026-11-01", periods=10, freq="h", tz="UTC")
    production = pd.concat([production, base.iloc[:3].assign(labelled_at=pd.Timestamp("2026-11-02", tz="UTC"))])
    return reference, production


def test_the_latest_fresh_labels_are_compared_on_and_seen_rows_left_out() -> None:
    from pipeline.config import Dataset
    from tests.conftest import tiny_dataset_section

    dataset = Dataset(**tiny_dataset_section())
    reference, production = _split_inputs()
    data = split_for_retraining(reference, production, dataset, holdout_fraction=0.3)
    assert data.new_rows == 10  # the three rows the champion trained on are not new
    held = set(data.holdout["record_id"])
    assert held == set(production["record_id"].iloc[7:10])  # only rows neither model trained on
    assert not held & set(data.train["record_id"])
    assert set(reference["record_id"]) <= set(data.train["record_id"])  # the champion's hold-out may train now
    assert data.compared_until == production["labelled_at"].iloc[9]
    assert "outcome" in data.train.columns


def test_rows_an_earlier_decision_used_are_never_compared_on_again() -> None:
    from pipeline.config import Dataset
    from tests.conftest import tiny_dataset_section

    dataset = Dataset(**tiny_dataset_section())
    reference, production = _split_inputs()
    first = split_for_retraining(reference, production, dataset, holdout_fraction=0.3)
    later = split_for_retraining(reference, production, dataset, 0.3, compared_until=first.compared_until)
    assert later.holdout.empty  # nothing fresh since: the next decision waits for new labels
    assert set(first.holdout["record_id"]) <= set(later.train["record_id"])  # used rows train instead
    newer = production.iloc[:2].assign(record_id=["n1", "n2"], labelled_at=pd.Timestamp("2026-11-03", tz="UTC"))
    fresh = split_for_retraining(
        reference, pd.concat([production, newer]), dataset, 0.5, compared_until=first.compared_until
    )
    assert set(fresh.holdout["record_id"]) == {"n2"}


def test_a_challengers_own_rows_and_its_champions_reference_set_give_back_its_training_rows() -> None:
    from pipeline.config import Dataset
    from tests.conftest import tiny_dataset_section

    dataset = Dataset(**tiny_dataset_section())
    reference, production = _split_inputs()
    data = split_for_retraining(reference, production, dataset, holdout_fraction=0.3)

    own = own_rows(data, dataset)

    # Only what the champion's reference set does not hold: the 10 new production rows, none of the 10 it has.
    assert sorted(own["record_id"]) == sorted(production["record_id"].iloc[:10])
    assert own.groupby("split").size().to_dict() == {"holdout": 3, "train": 7}
    assert set(own.loc[own["split"] == "holdout", "record_id"]) == set(data.holdout["record_id"])
    features = production.drop(columns=["target", "labelled_at"]).drop_duplicates("record_id")
    train, holdout = rebuild_training_rows(reference, own.merge(features, on="record_id"), dataset)

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values("record_id").reset_index(drop=True)

    pd.testing.assert_frame_equal(rows(train), rows(data.train))
    pd.testing.assert_frame_equal(rows(holdout), rows(data.holdout))


def test_warm_start_continues_the_champions_booster(settings: Settings) -> None:
    warm = settings.model_copy(
        update={"retrain": settings.retrain.model_copy(update={"strategy": "warm_start", "warm_start_rounds": 7})}
    )
    champion = fitted(frame(400, 1), warm, "v1")
    from pipeline.retraining import RetrainData

    data = RetrainData(train=frame(400, 2), holdout=frame(200, 3), new_rows=400)
    challenger = train_challenger(data, warm, champion, version="v2")
    assert challenger.embedding is champion.embedding  # the booster's inputs must not change
    rounds = challenger.classifier.get_booster().num_boosted_rounds()
    assert rounds == champion.classifier.get_booster().num_boosted_rounds() + 7
