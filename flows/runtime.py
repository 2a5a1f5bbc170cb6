"""What every flow opens first: the settings, the warehouse, and (for scoring) the champion."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

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
    """The warehouse, its tables created and its catalog up to date."""
    store = warehouse_of(settings)
    store.init()
    publish(store)
    return store


def warehouse_of(settings: Settings) -> Warehouse:
    """The warehouse the settings name, as it is (a cluster's worker reads and writes it; nothing is created)."""
    dataset = settings.dataset
    return open_warehouse(
        settings.warehouse_location,
        {f.name: f.kind for f in dataset.features},
        event_time=dataset.event_time_column is not None,
        catalog=settings.catalog_path,
    )


def publish(store: Warehouse) -> None:
    """Point the people's catalog at the tables' current files (after a flow's commits changed them).

    DuckDB reads object storage only through its httpfs extension, which is never downloaded here: for a
    warehouse on S3 the catalog is written only where that extension is installed.
    """
    try:
        build_catalog(store)
    except duckdb.Error as error:
        if not store.remote:
            raise
        store.catalog.unlink(missing_ok=True)  # a catalog that no longer follows the tables would mislead
        logging.getLogger(__name__).warning(
            "no catalog at %s: DuckDB reads %s only with its httpfs extension (%s); install it where people "
            "query the warehouse, then run `scorehouse catalog`",
            store.catalog,
            store.location,
            str(error).splitlines()[0],
        )


def load_champion(store: Warehouse, settings: Settings) -> ScoringModel:
    """The champion's model, after its files were checked against the registry's sha256."""
    with store.connect() as con:
        registered = champion(con)
    if registered is None:
        raise ArtifactError(
            "there is no champion model yet: run `scorehouse train`, or the train/scorehouse deployment, first"
        )
    return load_version(artifact_path(settings, registered.artifact_dir), registered.sha256)


def artifact_path(settings: Settings, stored: Path) -> Path:
    """A version's folder under the models root. The registry stores it relative to that root, so a moved
    or restored project still finds its models; an absolute path (older registries) keeps only its name."""
    return settings.models_dir / (stored.name if stored.is_absolute() else stored)


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
    """A flow run name that says what ran, on which dataset and when (`ingest lending_club 2026-11-21 14:05`),
    for the Prefect UI: runs of two configs on one server can be told apart."""
    return lambda: f"{verb} {dataset_of_this_run()}{utc_now():%Y-%m-%d %H:%M}"


def this_flow_run_id() -> str | None:
    """The id of the Prefect flow run doing this work (the innermost one: a subflow's own), stored beside the
    rows it writes so people can follow a batch or a report back to its run; None outside a flow run."""
    from prefect.runtime import flow_run

    return flow_run.get_id()


def dataset_of_this_run() -> str:
    """The dataset name of the running flow's `config` parameter and a space, or nothing when it cannot be read
    (the name is a label: a config that does not load fails the run itself, with its own message)."""
    from prefect.runtime import flow_run

    try:
        config = flow_run.parameters.get("config")
        return f"{settings_from(config).dataset_name} "
    except Exception:
        return ""
