"""The decision tables give XGBoost's own contributions (exact and approximate), and say when they cannot."""

from __future__ import annotations

import numpy as np
import pytest
from xgboost import XGBClassifier

from pipeline.explain import tree_contributions
from pipeline.treeshap import compile_tables, contributions, regrouped


def fitted(depth: int, seed: int = 0, trees: int = 40) -> tuple[XGBClassifier, np.ndarray]:
    """A classifier on 6 columns where columns 0 and 1 matter, and rows to explain with some missing values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    y = ((np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) + rng.normal(scale=0.5, size=600)) > 0).astype(int)
    model = XGBClassifier(n_estimators=trees, max_depth=depth, learning_rate=0.2, n_jobs=1).fit(x, y)
    rows = rng.normal(size=(300, 6)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.15] = np.nan
    return model, rows


@pytest.mark.parametrize("approximate", [False, True], ids=["exact", "approximate"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_tables_give_xgboosts_contributions(depth: int, approximate: bool) -> None:
    model, rows = fitted(depth)
    tables = compile_tables(model, approximate=approximate)
    assert tables is not None
    np.testing.assert_allclose(
        contributions(tables, rows), tree_contributions(model, rows, approximate=approximate), atol=2e-6
    )


def test_trees_too_deep_to_tabulate_are_left_to_xgboost() -> None:
    model, _ = fitted(depth=5)
    assert compile_tables(model, approximate=False) is None


def test_regrouped_tables_add_the_columns_of_a_group() -> None:
    model, rows = fitted(depth=2)
    tables = compile_tables(model, approximate=False)
    assert tables is not None
    groups = np.array([0, 0, 1, 1, 2, 2])
    together = contributions(regrouped(tables, groups, 3), rows)
    apart = tree_contributions(model, rows)
    np.testing.assert_allclose(together[:, :-1], apart[:, 0:6:2] + apart[:, 1:6:2], atol=2e-6)
    np.testing.assert_allclose(together[:, -1], apart[:, -1], atol=1e-6)


def test_more_rows_than_a_block_are_explained_block_by_block() -> None:
    model, rows = fitted(depth=2)
    tables = compile_tables(model, approximate=False)
    assert tables is not None
    many = np.tile(rows, (30, 1))  # 9,000 rows: two blocks
    np.testing.assert_allclose(contributions(tables, many)[-300:], contributions(tables, rows), atol=1e-6)
