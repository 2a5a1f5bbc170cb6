"""What every flow opens first: the settings, the warehouse, and (for scoring) the champion."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.artifacts import ArtifactError, load_version
from pipeline.config import Settings, load_settings
from pipeline.model import ScoringModel
from warehouse.catalog import build_catalog
from warehouse.layout import open_warehouse
from warehouse.registry import champion
from warehouse.store import Warehouse


def settings_from(config: str | None) -> Settings:
    return load_settings(Path(config) if config else None)


def open_store(settings: Settings) -> Warehouse:
    """The warehouse, its folders and schema files created and its catalog up to date."""
    dataset = settings.dataset
    store = open_warehouse(
        settings.warehouse_dir,
        {f.name: f.kind for f in dataset.features},
        event_time=dataset.event_time_column is not None,
    )
    store.init()
    store.clean_staging()  # temporary files of killed runs: never visible, now gone
    build_catalog(store)
    return store


def load_champion(store: Warehouse) -> ScoringModel:
    """The champion's model, after its files were checked against the registry's sha256."""
    with store.connect() as con:
        registered = champion(con)
    if registered is None:
        raise ArtifactError(
            "there is no champion model yet: run `scorehouse train`, or the train/scorehouse deployment, first"
        )
    return load_version(registered.artifact_dir, registered.sha256)


_clock_offset = timedelta(0)


def utc_now() -> datetime:
    """The time flows stamp on what they write; real time unless the demo simulates days."""
    return datetime.now(UTC) + _clock_offset


@contextmanager
def simulated_time(at: datetime) -> Iterator[None]:
    """Run as if the clock read `at` now (it keeps ticking). The demo uses it to simulate days."""
    global _clock_offset
    previous = _clock_offset
    _clock_offset = at - datetime.now(UTC)
    try:
        yield
    finally:
        _clock_offset = previous


@contextmanager
def without_heartbeats() -> Iterator[None]:
    """Flow runs started by hand in this process (CLI, demo, benchmark) skip flow-run heartbeats.

    A heartbeat lets a server notice that a deployed run's process died; here the process is the
    person's own, and each heartbeat thread costs a wait of up to a second at the end of every flow
    run (measured: 1.14 s per run with, 0.14 s without). Deployed runs keep them.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def run_name(verb: str) -> Callable[[], str]:
    """A flow run name that says what ran and when (`ingest 2026-11-21 14:05`), for the Prefect UI."""
    return lambda: f"{verb} {utc_now():%Y-%m-%d %H:%M}"
