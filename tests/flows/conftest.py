"""The real Prefect flows, in this process, against one temporary Prefect server for the whole session.

Each test gets its own project folder: a config (the repo's dataset contract, small model parameters)
whose relative [paths] resolve inside the folder, so every warehouse, model and drop folder is private.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.runtime import artifact_path, open_store
from pipeline.config import Settings, load_settings
from tests.conftest import SAMPLE, repo_config_document, write_toml
from tests.s3server import S3Server, seaweedfs
from warehouse.store import Warehouse

# The first 40% of the sample (3,943 rows) is the reference set; incoming records come from after it.
ARRIVALS_START = 4000


@pytest.fixture(scope="session", autouse=True)
def _prefect(prefect_harness: None) -> Iterator[None]:
    yield


@functools.cache
def _sample() -> pd.DataFrame:
    return pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)


def sample() -> pd.DataFrame:
    return _sample().copy()


def arrivals(n: int, start: int = ARRIVALS_START) -> pd.DataFrame:
    """`n` rows of the sample after the reference slice, as text, without the target (nobody knows it yet)."""
    rows = sample().iloc[start : start + n].drop(columns=["Class"]).reset_index(drop=True)
    assert len(rows) == n, f"the sample has only {len(rows)} rows from {start}"
    return rows


def synthetic_arrivals(n: int, prefix: str) -> pd.DataFrame:
    """`n` arrivals with fresh ids, for tests that need more rows than the sample has after the reference."""
    later = sample().iloc[ARRIVALS_START:].drop(columns=["Class"]).reset_index(drop=True)
    rows = later.iloc[[i % len(later) for i in range(n)]].reset_index(drop=True)
    rows["loan_id"] = [f"{prefix}{i:07d}" for i in range(n)]
    return rows


def typed(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Numeric features as numbers, as a Parquet exporter would write them."""
    out = frame.copy()
    for name in settings.dataset.numeric:
        out[name] = pd.to_numeric(out[name].replace("", None), errors="coerce")
    return out


@dataclass
class Project:
    """One private Scorehouse project: its config file and helpers to drop files and read tables."""

    folder: Path
    config_path: Path

    @property
    def config(self) -> str:
        return str(self.config_path)

    @functools.cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    def model_folder(self, stored: str | Path) -> Path:
        """A version's folder from the registry's `artifact_dir` (relative to the models root)."""
        return artifact_path(self.settings, Path(stored))

    def store(self) -> Warehouse:
        return open_store(self.settings)

    def drop_csv(self, frame: pd.DataFrame, name: str) -> Path:
        path = self.settings.incoming_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        return path

    def drop_parquet(self, frame: pd.DataFrame, name: str) -> Path:
        path = self.settings.incoming_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
        return path

    def drop_bytes(self, data: bytes, name: str) -> Path:
        path = self.settings.incoming_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with self.store().connect() as con:
            return con.execute(sql, params or []).df()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        with self.store().connect() as con:
            row = con.execute(sql, params or []).fetchone()
        assert row is not None
        return row[0]

    def counts(self) -> dict[str, int]:
        """Rows in every table of the warehouse."""
        store = self.store()
        with store.connect() as con:
            return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in store.tables}  # type: ignore[index]

    def batch_files(self, table: str) -> list[str]:
        """The data files of the table's current snapshot."""
        return sorted(self.store().files(table))

    def warehouse_files(self) -> set[str]:
        """Every data file of every table's current snapshot."""
        store = self.store()
        return {f for table in store.tables for f in store.files(table)}


def make_project(folder: Path, **config: Any) -> Project:
    folder.mkdir(parents=True, exist_ok=True)
    path = write_toml(folder / "scorehouse.toml", repo_config_document(**config))
    return Project(folder=folder, config_path=path)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", chunk_rows=500)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) on loopback for one test module, its credentials in the AWS_* variables."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server, pytest.MonkeyPatch.context() as env:
        for name, value in server.environment().items():
            env.setenv(name, value)
        yield server
