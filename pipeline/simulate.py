"""The demo's simulated arrivals: the rows of the sample after the reference slice, day by day.

What is simulated: the timing. Records arrive as daily files without their target; their labels
arrive as separate label files a few days later. One day carries deliberately malformed rows and one
unreadable file, so the quarantine has something to show.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from itertools import pairwise

import numpy as np
import pandas as pd

from pipeline.config import Dataset


def arrivals(sample: pd.DataFrame, reference_rows: int, days: int) -> list[pd.DataFrame]:
    """The rows after the reference slice, cut into `days` consecutive parts (with their target)."""
    later = sample.iloc[reference_rows:].reset_index(drop=True)
    bounds = np.linspace(0, len(later), days + 1).round().astype(int)
    return [later.iloc[start:end].reset_index(drop=True) for start, end in pairwise(bounds)]


def records_file(day_rows: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """What lands in the incoming folder: everything but the target, which nobody knows yet."""
    return day_rows.drop(columns=[dataset.target_column])


def labels_file(day_rows: pd.DataFrame, dataset: Dataset, labelled_on: date) -> pd.DataFrame:
    """The label file for a day's records: id, label, labelled_at."""
    start = datetime.combine(labelled_on, time(9), tzinfo=UTC)
    offsets = pd.to_timedelta(np.arange(len(day_rows)) % 480, unit="min")
    return pd.DataFrame(
        {
            dataset.id_column: day_rows[dataset.id_column].to_numpy(),
            "label": day_rows[dataset.target_column].to_numpy(),
            "labelled_at": (pd.Timestamp(start) + offsets).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )


def with_malformed_rows(records: pd.DataFrame, dataset: Dataset, seed: int) -> pd.DataFrame:
    """A copy with a few rows broken the ways real files break: each breaks one rule of the contract."""
    rng = np.random.default_rng(seed)
    broken = records.astype(object).copy()
    rows = rng.choice(len(broken), size=6, replace=False)
    numeric = [f for f in dataset.features if f.kind == "numeric"]
    categorical = [f for f in dataset.features if f.kind == "categorical" and f.allowed]
    required = [f for f in dataset.features if not f.nullable]
    bounded = [f for f in numeric if f.min is not None]

    def put(row: int, column: str, value: str | float | None) -> None:
        broken.loc[broken.index[row], column] = value

    put(rows[0], numeric[0].name, "n/a")
    put(rows[1], categorical[0].name, "unknown")
    if bounded:
        put(rows[2], bounded[0].name, (bounded[0].min or 0) - 1)
    if required:
        put(rows[3], required[-1].name, None)
    put(rows[4], dataset.id_column, None)
    duplicate = broken.iloc[[rows[5]]]
    return pd.concat([broken, duplicate], ignore_index=True)  # the same id twice in one file


def shifted(records: pd.DataFrame, dataset: Dataset, reference: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A copy where half of the numeric features (chosen with `seed`) moved up by one standard deviation
    of the reference, within their allowed range: the population changed, the outcomes did not."""
    rng = np.random.default_rng(seed)
    numeric = [f for f in dataset.features if f.kind == "numeric"]
    moved = rng.choice(len(numeric), size=max(1, len(numeric) // 2), replace=False)
    out = records.copy()
    for index in moved:
        feature = numeric[index]
        values = pd.to_numeric(out[feature.name], errors="coerce")
        shift = pd.to_numeric(reference[feature.name], errors="coerce").std()
        out[feature.name] = (values + shift).clip(lower=feature.min, upper=feature.max)
    return out
