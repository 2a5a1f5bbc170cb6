"""What monitoring a large window costs: `monitor_window` on 1M rows with 200k labels, report included.

The window is handed over as the monitor flow reads it: ids, scores and labels of every row, and the
drift sample (`max_rows` rows) whole, with the bundled sample's width (17 numeric and 5 categorical
features, 8 embedding columns). The time is the pure monitor's (quality and CBPE on every row, drift and
Evidently's report on the sample), without the warehouse query. Prints seconds and peak RSS; merges
them into results.json.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from bench.calibrate import RESULTS, merge
from pipeline.config import load_settings
from pipeline.monitoring import MonitorRules, monitor_window, sample_positions

NUMERIC = [f"n{i:02d}" for i in range(17)]
CATEGORICAL = [f"c{i}" for i in range(5)]
EMBEDDING = [f"emb_{i:02d}" for i in range(8)]


def frame(rows: int, labels: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(rng.normal(size=(rows, len(NUMERIC) + len(EMBEDDING))), columns=[*NUMERIC, *EMBEDDING])
    for i, name in enumerate(CATEGORICAL):
        out[name] = rng.choice([f"v{j}" for j in range(3 + 12 * i)], size=rows)
    out["score"] = 1 / (1 + np.exp(-(out["n00"] + out["n01"] - 2.5)))
    target = (rng.uniform(size=rows) < out["score"]).astype(float)
    target[labels:] = np.nan
    out["target"] = target
    out.insert(0, "record_id", "w" + pd.Series(np.arange(rows)).astype(str).str.zfill(8))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=200_000)
    args = parser.parse_args()
    settings = load_settings()
    reference = frame(8_000, 8_000, seed=1)
    reference.loc[reference.index[:5_000], "target"] = np.nan  # training rows; the hold-out keeps its labels
    whole = frame(args.rows, args.labels, seed=2)
    window = whole[["record_id", "score", "target"]].copy()
    drift_sample = whole.iloc[sample_positions(args.rows, settings.monitoring.max_rows, settings.monitoring.seed)]
    drift_sample = drift_sample.reset_index(drop=True)
    del whole
    started = time.perf_counter()
    from pipeline.evidently_report import _evidently

    _evidently()  # once per process (6 s unloaded); timed apart from the window's own cost
    imported = time.perf_counter() - started
    started = time.perf_counter()
    result = monitor_window(
        reference,
        window,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        embedding=EMBEDDING,
        threshold=0.1,
        rules=MonitorRules.from_settings(settings.monitoring),
        max_rows=settings.monitoring.max_rows,
        seed=settings.monitoring.seed,
        drift_sample=drift_sample,
    )
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    merge(
        RESULTS,
        {
            "monitor_1m_seconds": round(seconds, 1),
            "monitor_1m_evidently_import_seconds": round(imported, 1),
            "monitor_1m_peak_mb": round(peak_mb),
        },
    )
    print(
        f"monitor_window on {args.rows:,} rows with {args.labels:,} labels: {seconds:.1f} s "
        f"(plus {imported:.1f} s importing Evidently), peak RSS {peak_mb:.0f} MB"
    )
    print(f"report sampled: {result.sampled}; alerts: {sorted(result.firing) or 'none'}")


if __name__ == "__main__":
    main()
