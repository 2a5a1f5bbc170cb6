"""Synthetic data for the model tests: a few hundred rows of the tiny contract, seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Dataset, Model
from pipeline.model import ScoringModel, fit_model
from tests.conftest import FAST_PARAMS, tiny_dataset_section

COLOURS = ["red", "green", "blue"]


def synthetic_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Rows of the tiny contract with a target that depends on the features, and a few missing values."""
    rng = np.random.default_rng(seed)
    amount = rng.uniform(0, 100, n)
    rate = rng.normal(5, 2, n)
    colour = rng.choice(COLOURS, n)
    logit = 0.04 * (amount - 50) + 0.5 * (rate - 5) + np.where(colour == "blue", 1.0, 0.0)
    outcome = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    rate[rng.choice(n, size=n // 20, replace=False)] = np.nan
    return pd.DataFrame(
        {
            "record_id": [f"s{i:04d}" for i in range(n)],
            "amount": amount,
            "rate": rate,
            "colour": pd.Series(colour, dtype=object),
            "outcome": outcome,
        }
    )


@pytest.fixture(scope="session")
def tiny_dataset() -> Dataset:
    return Dataset(**tiny_dataset_section())


@pytest.fixture(scope="session")
def tiny_model_settings() -> Model:
    return Model(embedding_size=3, input="both", threshold=0.4, params=FAST_PARAMS)


@pytest.fixture(scope="session")
def synthetic() -> pd.DataFrame:
    return synthetic_frame()


@pytest.fixture(scope="session")
def fitted(synthetic: pd.DataFrame, tiny_dataset: Dataset, tiny_model_settings: Model) -> ScoringModel:
    target = (synthetic["outcome"] == "yes").to_numpy(dtype=int)
    return fit_model(synthetic, target, tiny_dataset, tiny_model_settings, version="v1", seed=3)
