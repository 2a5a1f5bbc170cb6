"""Simulations with a known truth that measure how often the decision rules are wrong.

Two sources of data:
- a synthetic generator: 8 standard-normal numeric features (5 of them carry the signal) and one
  categorical, a logistic truth, the "model" score equal to the true probability, and a fixed linear
  projection as the embedding; drift, concept shift and quality drops are applied with known sizes;
- the bundled Lending Club sample: rows drawn at random (so without drift) into a reference set, a
  hold-out and windows, scored by a real model fitted with the pipeline's own code.

Used by `make calibrate` (bench/calibrate.py, full trial counts) and by tests/model (a few trials).
Every function takes its seed; nothing happens at import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from xgboost import XGBClassifier

from pipeline.monitoring import MonitorResult, MonitorRules, monitor_window
from pipeline.promotion import PromotionRule, PromotionTest, test_promotion

NUMERIC = [f"x{i}" for i in range(8)]
CATEGORICAL = ["colour"]
EMBEDDING = [f"emb_{i}" for i in range(4)]
BETA = np.array([1.0, 0.8, 0.6, 0.5, 0.4, 0.0, 0.0, 0.0])
INTERCEPT = -1.6  # about 25% positives
THRESHOLD = 0.3
SHIFTED = ["x0", "x5"]  # a quarter of the 8 numeric features; one with signal, one without


@dataclass(frozen=True)
class Scenario:
    """How a synthetic window differs from the reference."""

    shift: float = 0.0  # in standard deviations, added to SHIFTED
    noise: float = 0.0  # share of labels replaced by coin flips at the base rate (concept shift, lower AUC)


def _projection() -> np.ndarray:
    return np.random.default_rng(12345).normal(size=(len(NUMERIC), len(EMBEDDING))) / np.sqrt(len(NUMERIC))


def synthetic(rows: int, seed: int, scenario: Scenario = Scenario(), *, prefix: str = "r") -> pd.DataFrame:
    """Rows with features, the true-probability score, the embedding and a 0/1 target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(NUMERIC)))
    for column in SHIFTED:
        x[:, NUMERIC.index(column)] += scenario.shift
    score = expit(x @ BETA + INTERCEPT)  # a shifted feature moves the scores too, as it would in production
    target = (rng.uniform(size=rows) < score).astype(float)
    flip = rng.uniform(size=rows) < scenario.noise
    target[flip] = (rng.uniform(size=int(flip.sum())) < score.mean()).astype(float)
    frame = pd.DataFrame(x, columns=NUMERIC)
    frame["colour"] = rng.choice(["red", "green", "blue", "grey"], size=rows, p=[0.4, 0.3, 0.2, 0.1])
    frame[EMBEDDING] = x @ _projection()
    frame["score"] = score
    frame["target"] = target
    frame.insert(0, "record_id", f"{prefix}{seed}-" + pd.Series(np.arange(rows)).astype(str).str.zfill(7))
    return frame


def noise_for_auc_drop(drop: float, seed: int = 0, rows: int = 200_000) -> float:
    """The label-noise share that lowers the true ROC AUC by `drop` (bisection on a large sample)."""
    base = synthetic(rows, seed)
    auc = roc_auc_score(base["target"], base["score"])
    low, high = 0.0, 1.0
    for _ in range(14):
        middle = (low + high) / 2
        noisy = synthetic(rows, seed, Scenario(noise=middle))
        if auc - roc_auc_score(noisy["target"], noisy["score"]) < drop:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def synthetic_reference(seed: int, rows: int = 6000, holdout: int = 3000) -> pd.DataFrame:
    """A version's reference set: the training rows without target, the hold-out with it."""
    frame = synthetic(rows, seed, prefix="ref")
    frame.loc[frame.index[: rows - holdout], "target"] = np.nan
    return frame


def synthetic_window(seed: int, rows: int, labelled: int, scenario: Scenario = Scenario()) -> pd.DataFrame:
    """A window of `rows` rows of which the first `labelled` carry their label."""
    frame = synthetic(rows, seed, scenario, prefix="w")
    frame.loc[frame.index[labelled:], "target"] = np.nan
    return frame


def monitor(reference: pd.DataFrame, window: pd.DataFrame, rules: MonitorRules) -> MonitorResult:
    """The monitor's verdicts on one synthetic window, without Evidently's report."""
    return monitor_window(
        reference,
        window,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        embedding=EMBEDDING,
        threshold=THRESHOLD,
        rules=rules,
        report=False,
    )


def monitor_trials(
    trials: int, rows: int, labelled: int, scenario: Scenario, rules: MonitorRules, seed: int = 0
) -> list[MonitorResult]:
    """`trials` independent synthetic windows against independent references."""
    return [
        monitor(synthetic_reference(seed + 10_000 + t), synthetic_window(seed + t, rows, labelled, scenario), rules)
        for t in range(trials)
    ]


# --- promotion -----------------------------------------------------------------------------------------


@cache
def _truth() -> pd.DataFrame:
    """50k independent rows on which a model's true ROC AUC is measured (built once per process)."""
    return synthetic(50_000, 99_999, prefix="e")


def fit_booster(x: np.ndarray, y: np.ndarray, seed: int) -> XGBClassifier:
    """A small stochastic XGBoost model: another seed gives an equal model that scores differently."""
    params = {"n_estimators": 80, "max_depth": 2, "learning_rate": 0.1, "subsample": 0.8, "colsample_bytree": 0.8}
    return XGBClassifier(**params, random_state=seed, n_jobs=1).fit(x, y)


def promotion_trial(
    kind: str, seed: int, train_rows: int, fresh_rows: int, rule: PromotionRule
) -> tuple[PromotionTest, float]:
    """One synthetic decision; returns the test and the true gain (ROC AUC on 50k independent rows).

    kind: "equal" (same data, other seed), "shuffled" (challenger trained with x0 shuffled),
    "better" (the champion never saw x1; the challenger did).
    """
    train = synthetic(train_rows, seed, prefix="t")
    fresh = synthetic(fresh_rows, seed + 1, prefix="f")
    x, y = train[NUMERIC].to_numpy(), train["target"].to_numpy().astype(int)
    x_champion, x_challenger = x.copy(), x.copy()
    rng = np.random.default_rng(seed)
    if kind == "shuffled":
        x_challenger[:, 0] = rng.permutation(x_challenger[:, 0])
    if kind == "better":
        x_champion[:, 1] = 0.0
    champion = fit_booster(x_champion, y, seed)
    challenger = fit_booster(x_challenger, y, seed + 7 if kind == "equal" else seed)

    def scores(model: XGBClassifier, frame: pd.DataFrame, blind: bool) -> np.ndarray:
        values = frame[NUMERIC].to_numpy().copy()
        if blind:
            values[:, 1] = 0.0
        return np.asarray(model.predict_proba(values)[:, 1])

    blind_champion = kind == "better"
    test = test_promotion(
        fresh["target"].to_numpy().astype(int),
        scores(champion, fresh, blind_champion),
        scores(challenger, fresh, False),
        rule,
        thresholds=(THRESHOLD, THRESHOLD),
    )
    if kind != "better":  # the true gain is known without measuring: 0 (equal) or clearly negative (shuffled)
        return test, float("nan")
    truth = _truth()
    true_gain = roc_auc_score(truth["target"], scores(challenger, truth, False)) - roc_auc_score(
        truth["target"], scores(champion, truth, blind_champion)
    )
    return test, float(true_gain)


def sample_promotion_trial(
    sample: pd.DataFrame,
    fit: Callable[[pd.DataFrame, int], Callable[[pd.DataFrame], np.ndarray]],
    seed: int,
    fresh_rows: int,
    rule: PromotionRule,
    threshold: float,
) -> PromotionTest:
    """Champion and an equal challenger (same rows, other seed) on the bundled sample; fresh rows held out."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sample))
    fresh, train = sample.iloc[order[:fresh_rows]], sample.iloc[order[fresh_rows:]]
    champion, challenger = fit(train, seed), fit(train, seed + 7)
    return test_promotion(
        fresh["y"].to_numpy(),
        champion(fresh),
        challenger(fresh),
        rule,
        thresholds=(threshold, threshold),
    )


def rate(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else float("nan")
