"""How often the decisions are wrong, on a known truth: a few seeded trials of each simulation of `make calibrate`.

The full runs (200 trials per false-positive rate) are `make calibrate`; these keep the rules honest in
`make test` within seconds. Seeds are fixed, so the counts are exact, not flaky.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.calibration import Scenario, monitor_trials, noise_for_auc_drop, promotion_trial
from pipeline.monitoring import MonitorResult, MonitorRules
from pipeline.promotion import PromotionRule

RULE = PromotionRule(metric="roc_auc", min_improvement=0.005, guard_metric="recall", guard_tolerance=0.02)
RULES = MonitorRules()


def test_an_equal_challenger_is_rarely_promoted() -> None:
    promoted = [promotion_trial("equal", seed, 2000, 2000, RULE)[0].promote for seed in range(12)]
    assert sum(promoted) <= 1  # the level is 5%: at most 1 of 12


def test_a_challenger_with_a_shuffled_feature_is_never_promoted() -> None:
    tests = [promotion_trial("shuffled", seed, 2000, 2000, RULE)[0] for seed in range(8)]
    assert not any(t.promote for t in tests)
    assert all(t.gain_high < 0 for t in tests)  # the interval says it is worse, not only "not better"


def test_a_truly_better_challenger_is_promoted() -> None:
    results = [promotion_trial("better", seed, 2000, 2000, RULE) for seed in range(8)]
    assert np.mean([gain for _, gain in results]) > 0.03  # the true gain, on independent rows
    assert sum(t.promote for t, _ in results) >= 7


@pytest.fixture(scope="module")
def undrifted() -> list[MonitorResult]:
    return monitor_trials(20, 4000, 2000, Scenario(), RULES, seed=100)


def test_undrifted_windows_rarely_alert(undrifted: list[MonitorResult]) -> None:
    assert sum(bool(r.firing) for r in undrifted) <= 1


def test_cbpe_is_accurate_on_undrifted_windows(undrifted: list[MonitorResult]) -> None:
    gaps = [abs(r.get("cbpe_gap_roc_auc").value) for r in undrifted]
    assert np.mean(gaps) <= 0.02
    assert not any(r.get("cbpe_gap_roc_auc").status == "alert" for r in undrifted)


def test_a_half_sd_shift_in_a_quarter_of_the_features_is_detected() -> None:
    results = monitor_trials(8, 1000, 500, Scenario(shift=0.5), RULES, seed=200)
    assert sum("drift" in r.firing for r in results) >= 7


def test_an_auc_drop_of_five_points_is_detected_and_flags_cbpe() -> None:
    noise = noise_for_auc_drop(0.05, rows=50_000)
    results = monitor_trials(8, 4000, 2000, Scenario(noise=noise), RULES, seed=300)
    assert sum("quality" in r.firing for r in results) >= 7
    assert sum(r.get("cbpe_gap_roc_auc").status == "alert" for r in results) >= 4  # the estimate misses the drop
