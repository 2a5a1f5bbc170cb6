"""`make calibrate`: the error rates of promotion, alerts and CBPE, measured by simulation with a known truth.

Prints the table of the README's "How much to trust the alerts" and merges its numbers into
artifacts/bench/results.json (other keys of that file are kept). `--trials` scales every count
(the full run: 200 trials for each false-positive rate, 100 windows for each power).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.calibration import (
    Scenario,
    monitor_trials,
    noise_for_auc_drop,
    promotion_trial,
    rate,
    sample_promotion_trial,
)
from pipeline.config import REPO_ROOT, Settings, load_settings
from pipeline.model import ScoringModel, fit_model
from pipeline.monitoring import MonitorResult, MonitorRules, monitor_window
from pipeline.promotion import PromotionRule
from pipeline.retraining import promotion_rule
from pipeline.training import binary_target

RESULTS = REPO_ROOT / "artifacts" / "bench" / "results.json"
FAST = {
    "n_estimators": 80,
    "max_depth": 2,
    "learning_rate": 0.1,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "n_jobs": 1,
}


def _sample(settings: Settings) -> pd.DataFrame:
    frame = pd.read_csv(settings.reference_path, dtype={settings.dataset.id_column: str})
    frame = frame[frame[settings.dataset.target_column].notna()].reset_index(drop=True)
    frame["y"] = binary_target(frame[settings.dataset.target_column], settings.dataset)
    return frame.rename(columns={settings.dataset.id_column: "record_id"})


def _sample_fitter(settings: Settings) -> Callable[[pd.DataFrame, int], Callable[[pd.DataFrame], np.ndarray]]:
    model = settings.model.model_copy(update={"params": FAST})

    def fit(train: pd.DataFrame, seed: int) -> Callable[[pd.DataFrame], np.ndarray]:
        fitted = fit_model(train, train["y"].to_numpy(), settings.dataset, model, version="sim", seed=seed)
        return lambda frame: fitted.score(frame)[0]

    return fit


def sample_windows(
    settings: Settings, rules: MonitorRules, models: int, per_model: int, rows: int
) -> list[MonitorResult]:
    """Undrifted windows of the bundled sample: random rows, against a model fitted on other random rows."""
    sample = _sample(settings)
    dataset = settings.dataset
    model = settings.model.model_copy(update={"params": FAST})
    results = []
    for m in range(models):
        rng = np.random.default_rng(1000 + m)
        order = rng.permutation(len(sample))
        train, holdout, rest = (sample.iloc[order[:2500]], sample.iloc[order[2500:4000]], sample.iloc[order[4000:]])
        fitted = fit_model(train, train["y"].to_numpy(), dataset, model, version="sim", seed=m)

        def scored(frame: pd.DataFrame, labelled: bool, fitted: ScoringModel = fitted) -> pd.DataFrame:
            scores, _, vectors = fitted.score(frame)
            out = frame[["record_id", *dataset.feature_names]].reset_index(drop=True)
            out[[f"emb_{i}" for i in range(vectors.shape[1])]] = vectors
            out["score"] = scores
            out["target"] = frame["y"].to_numpy(dtype=float) if labelled else np.nan
            return out

        reference = pd.concat([scored(train, False), scored(holdout, True)], ignore_index=True)
        embedding = [f"emb_{i}" for i in range(settings.model.embedding_size)]
        for w in range(per_model):
            window = rest.iloc[np.random.default_rng(m * 1000 + w).choice(len(rest), size=rows, replace=False)]
            results.append(
                monitor_window(
                    reference,
                    scored(window, True),
                    numeric=dataset.numeric,
                    categorical=dataset.categorical,
                    embedding=embedding,
                    threshold=settings.model.threshold,
                    rules=rules,
                    report=False,
                )
            )
    return results


PARTS = ("promotion", "synthetic", "sample")


def run(
    trials: int, seed: int = 0, parts: tuple[str, ...] = PARTS
) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    """The measurements of `parts`; returns the results and the table rows (what, measured, target, on what)."""
    settings = load_settings()
    rules, rule = MonitorRules.from_settings(settings.monitoring), promotion_rule(settings)
    power_trials = max(trials // 2, 10)
    results: dict[str, Any] = {}
    table: list[tuple[str, str, str, str]] = []

    if "promotion" in parts:
        _promotion(trials, power_trials, seed, settings, rule, results, table)
    if "synthetic" in parts:
        _synthetic(trials, power_trials, seed, rules, results, table)
    if "sample" in parts:
        _on_sample(trials, settings, rules, results, table)
    return results, table


Row = tuple[str, str, str, str]


def _promotion(
    trials: int,
    power_trials: int,
    seed: int,
    settings: Settings,
    rule: PromotionRule,
    results: dict[str, Any],
    table: list[Row],
) -> None:
    equal = [promotion_trial("equal", seed + t, 3000, 2000, rule) for t in range(trials)]
    shuffled = [promotion_trial("shuffled", seed + t, 3000, 2000, rule) for t in range(power_trials)]
    better = [promotion_trial("better", seed + t, 3000, 2000, rule) for t in range(power_trials)]
    sample = _sample(settings)
    fit = _sample_fitter(settings)
    # Each trial fits two real models (1.5 s each on 2 loaded cores), so the sample gets half the trials.
    sample_equal = [
        sample_promotion_trial(sample, fit, seed + t, 2500, rule, settings.model.threshold) for t in range(power_trials)
    ]
    results["false_promotion_rate"] = rate([t.promote for t, _ in equal])
    results["false_promotion_rate_sample"] = rate([t.promote for t in sample_equal])
    results["shuffled_feature_promotions"] = int(sum(t.promote for t, _ in shuffled))
    results["better_promotion_rate"] = rate([t.promote for t, _ in better])
    results["better_true_gain"] = float(np.mean([g for _, g in better]))
    level = f"<= {rule.alpha:g}"
    table += [
        (
            "false promotion rate, equal challenger (synthetic)",
            f"{results['false_promotion_rate']:.3f}",
            level,
            f"{trials} trials, 2,000 fresh rows",
        ),
        (
            "false promotion rate, equal challenger (Lending Club sample)",
            f"{results['false_promotion_rate_sample']:.3f}",
            level,
            f"{power_trials} trials, 2,500 fresh rows",
        ),
        (
            "challengers promoted with a feature shuffled",
            f"{results['shuffled_feature_promotions']} of {power_trials}",
            "0",
            "2,000 fresh rows",
        ),
        (
            f"promotion rate, challenger better by {results['better_true_gain']:.3f} ROC AUC",
            f"{results['better_promotion_rate']:.2f}",
            ">= 0.80",
            f"{power_trials} trials, 2,000 fresh rows",
        ),
    ]


def _synthetic(
    trials: int, power_trials: int, seed: int, rules: MonitorRules, results: dict[str, Any], table: list[Row]
) -> None:
    null = monitor_trials(trials, 4000, 2000, Scenario(), rules, seed)
    drift = monitor_trials(power_trials, 1000, 500, Scenario(shift=0.5), rules, seed + 50_000)
    noise = noise_for_auc_drop(0.05)
    dropped = monitor_trials(power_trials, 4000, 2000, Scenario(noise=noise), rules, seed + 60_000)
    results["false_alert_rate"] = rate([bool(r.firing) for r in null])
    results["false_alert_rate_drift"] = rate([("drift" in r.firing or "prediction_drift" in r.firing) for r in null])
    results["false_alert_rate_quality"] = rate(["quality" in r.firing for r in null])
    results["drift_power"] = rate(["drift" in r.firing for r in drift])
    results["quality_drop_power"] = rate(["quality" in r.firing for r in dropped])
    gaps = [abs(r.get("cbpe_gap_roc_auc").value) for r in null]
    results["cbpe_auc_gap"] = float(np.mean(gaps))
    results["cbpe_auc_gap_p95"] = float(np.quantile(gaps, 0.95))
    results["cbpe_flag_rate_undrifted"] = rate([r.get("cbpe_gap_roc_auc").status == "alert" for r in null])
    results["cbpe_flag_rate_concept_shift"] = rate([r.get("cbpe_gap_roc_auc").status == "alert" for r in dropped])
    level = f"<= {rules.quality.alpha:g}"
    table += [
        (
            "false alert rate (any alert), undrifted windows (synthetic)",
            f"{results['false_alert_rate']:.3f}",
            level,
            f"{trials} windows of 4,000 rows, 2,000 labels",
        ),
        (
            "  of which drift / quality",
            f"{results['false_alert_rate_drift']:.3f} / {results['false_alert_rate_quality']:.3f}",
            level,
            "",
        ),
        (
            "drift power: 0.5 sd shift in a quarter of the features",
            f"{results['drift_power']:.2f}",
            ">= 0.80",
            f"{power_trials} windows of 1,000 rows",
        ),
        (
            "quality power: ROC AUC drop of 0.05",
            f"{results['quality_drop_power']:.2f}",
            ">= 0.80",
            f"{power_trials} windows with 2,000 labels (about 25% positive)",
        ),
        (
            "CBPE mean |estimated - realised| ROC AUC, undrifted",
            f"{results['cbpe_auc_gap']:.4f}",
            "<= 0.02",
            f"{trials} windows with 2,000 labels (95th percentile {results['cbpe_auc_gap_p95']:.4f})",
        ),
        (
            "CBPE flagged unreliable: undrifted / concept shift (AUC -0.05)",
            f"{results['cbpe_flag_rate_undrifted']:.3f} / {results['cbpe_flag_rate_concept_shift']:.2f}",
            "low / high",
            f"bound {rules.cbpe_max_gap:g} beyond noise",
        ),
    ]


def _on_sample(trials: int, settings: Settings, rules: MonitorRules, results: dict[str, Any], table: list[Row]) -> None:
    on_sample = sample_windows(settings, rules, models=max(trials // 10, 2), per_model=10, rows=2000)
    results["false_alert_rate_sample"] = rate([bool(r.firing) for r in on_sample])
    results["false_alert_rate_sample_quality"] = rate(["quality" in r.firing for r in on_sample])
    table.append(
        (
            "false alert rate (any alert), undrifted windows (Lending Club sample)",
            f"{results['false_alert_rate_sample']:.3f}",
            f"<= {rules.quality.alpha:g}",
            f"{len(on_sample)} windows of 2,000 rows ({max(trials // 10, 2)} models)",
        )
    )


def render(table: list[Row]) -> str:
    lines = ["| what | measured | target | on |", "|---|---|---|---|"]
    lines += [f"| {what} | {value} | {target} | {basis} |" for what, value, target, basis in table]
    return "\n".join(lines)


def merge(path: Path, results: dict[str, Any]) -> None:
    """Add the results to the JSON file without dropping the keys other benchmarks wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps(existing | results, indent=2, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=200, help="trials per false-positive rate (powers use half)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    args = parser.parse_args()
    started = time.perf_counter()
    results, table = run(args.trials, parts=tuple(args.parts.split(",")))
    results["calibration_seconds"] = round(time.perf_counter() - started, 1)
    results["calibration_trials"] = args.trials
    merge(args.out, results)
    print(render(table))
    print(f"\n{results['calibration_seconds']} s; results merged into {args.out}")


if __name__ == "__main__":
    main()
