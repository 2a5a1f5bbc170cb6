"""The drift rule: per column an effect size and a significance test; a column drifts only when both say so.

Numeric columns: the Wasserstein distance normed by the reference's standard deviation (effect size,
in reference sds) and the two-sample Kolmogorov-Smirnov test. Categorical columns: the Jensen-Shannon
distance (base 2, 0..1) and the chi-square test of homogeneity, with categories expected fewer than
5 times merged first (the chi-square approximation needs that; 51 states on a 100-row window would
otherwise flag noise). All from scipy.

Significance is corrected for testing a whole family of columns at once (Bonferroni: each column
at `p_value / columns`), so an undrifted window flags any column of the family with probability at
most `p_value`; materiality (`distance`) keeps a large window from flagging differences too small to
matter. Both numbers are kept for every column, drifted or not, so a trend below the bar is visible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

MISSING = "(missing)"
OTHER = "(rare)"


@dataclass(frozen=True, kw_only=True)
class DriftRule:
    p_value: float = 0.05  # family-wise level
    distance: float = 0.1  # materiality: normed Wasserstein or Jensen-Shannon


@dataclass(frozen=True, kw_only=True)
class ColumnDrift:
    column: str
    method: str  # "normed Wasserstein + K-S" or "Jensen-Shannon + chi-square"
    distance: float
    p_value: float
    level: float  # the per-column p-value bar after the family correction
    bar: float  # the materiality threshold on the distance
    significant: bool
    material: bool
    rows: int

    @property
    def drifted(self) -> bool:
        return self.significant and self.material

    @property
    def detail(self) -> str:
        verdict = "drift" if self.drifted else "no drift"
        return (
            f"{self.method}: distance {self.distance:.4g} (material at >= {self.bar:g}), p = {self.p_value:.3g} "
            f"(significant below {self.level:.3g}): {verdict}."
        )


def numeric_drift(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(normed Wasserstein distance, K-S p-value); missing values are left out; NaN when a side is empty."""
    ref, cur = reference[np.isfinite(reference)], current[np.isfinite(current)]
    if len(ref) == 0 or len(cur) == 0:
        return math.nan, math.nan
    spread = float(np.std(ref))
    distance = float(wasserstein_distance(ref, cur)) / (spread if spread > 0 else 1.0)
    # The exact K-S distribution costs seconds per column on a few thousand rows; the asymptotic one is
    # accurate there (both samples large), so it is used above a million row pairs.
    method = "exact" if len(ref) * len(cur) <= 1_000_000 else "asymp"
    return distance, float(ks_2samp(ref, cur, method=method).pvalue)


def _categories(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), MISSING).astype(str)


def categorical_drift(reference: pd.Series, current: pd.Series) -> tuple[float, float]:
    """(Jensen-Shannon distance, chi-square p-value) of the two category distributions."""
    if len(reference) == 0 or len(current) == 0:
        return math.nan, math.nan
    table = pd.concat(
        [_categories(reference).value_counts().rename("ref"), _categories(current).value_counts().rename("cur")],
        axis=1,
    ).fillna(0.0)
    distance = float(jensenshannon(table["ref"], table["cur"], base=2))
    expected = table.sum(axis=1) * min(table["ref"].sum(), table["cur"].sum()) / table.to_numpy().sum()
    rare = expected < 5
    if rare.any():
        table = pd.concat([table[~rare], table[rare].sum().to_frame(OTHER).T])
    table = table[table.sum(axis=1) > 0]
    if len(table) < 2:
        return distance, 1.0
    return distance, float(chi2_contingency(table.to_numpy()).pvalue)


NUMERIC_METHOD, CATEGORICAL_METHOD = "normed Wasserstein + K-S", "Jensen-Shannon + chi-square"

# Runs the per-column statistics of some columns, (column, numeric?) each, on two frames holding them and
# returns (distance, p) per column in order: `column_statistics` here, or on a cluster (flows/engine.py).
ColumnStatistics = Callable[[pd.DataFrame, pd.DataFrame, Sequence[tuple[str, bool]]], list[tuple[float, float]]]


def column_statistics(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[tuple[str, bool]]
) -> list[tuple[float, float]]:
    """(distance, p-value) of each (column, numeric?): each column's statistics depend on that column only."""
    return [
        numeric_drift(reference[name].to_numpy(dtype=float), current[name].to_numpy(dtype=float))
        if numeric
        else categorical_drift(reference[name], current[name])
        for name, numeric in columns
    ]


def drift_columns(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    rule: DriftRule,
    statistics: ColumnStatistics = column_statistics,
) -> list[ColumnDrift]:
    """One verdict per column of one family (all tested at once: the correction counts them)."""
    columns = [(name, True) for name in numeric] + [(name, False) for name in categorical]
    level = rule.p_value / max(len(columns), 1)
    return [
        ColumnDrift(
            column=name,
            method=NUMERIC_METHOD if is_numeric else CATEGORICAL_METHOD,
            distance=distance,
            p_value=p,
            level=level,
            bar=rule.distance,
            significant=bool(math.isfinite(p) and p < level),
            material=bool(math.isfinite(distance) and distance >= rule.distance),
            rows=len(current),
        )
        for (name, is_numeric), (distance, p) in zip(columns, statistics(reference, current, columns), strict=True)
    ]


def drifted_share(columns: Sequence[ColumnDrift]) -> float:
    """Share of the family's columns that drifted; NaN for an empty family."""
    return sum(c.drifted for c in columns) / len(columns) if columns else math.nan
