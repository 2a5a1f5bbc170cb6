"""The pages' only way to the warehouse: the `warehouse.queries` functions, through one read-only
reader per catalog, with answers reused for a few seconds.

A page calls `ask(queries.totals)` or `ask(queries.prediction_page, where, limit=50, offset=0)`. Only
functions of `warehouse.queries` can be asked (there is no way to send SQL from here), and an answer
is reused until the current `ttl_seconds` period ends, so new batches appear without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import duckdb
import streamlit as st

from dashboard.settings import DashboardSettings
from pipeline.config import load_settings
from warehouse import queries
from warehouse.layout import open_warehouse

P = ParamSpec("P")
T = TypeVar("T")


def settings() -> DashboardSettings:
    return DashboardSettings()


@st.cache_resource(show_spinner=False)
def _reader(source: str) -> queries.Reader:
    """One reader per source for the whole server: a catalog file's reader reopens the file itself when it is
    replaced; a warehouse on object storage is read through snapshots of its tables, renewed as they move."""
    if "://" not in source:
        return queries.CatalogReader(Path(source))
    config = load_settings()
    dataset = config.dataset
    store = open_warehouse(
        source,
        {f.name: f.kind for f in dataset.features},
        event_time=dataset.event_time_column is not None,
        catalog=config.catalog_path,
    )
    return queries.SnapshotReader(store)


def reader() -> queries.Reader:
    """The reader of the configured source (for work done outside a page run, like a CSV download)."""
    return _reader(settings().source())


@st.cache_data(ttl=timedelta(minutes=10), max_entries=2000, show_spinner=False)
def _answer(source: str, query: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...], period: int) -> Any:
    """Run a `warehouse.queries` function. `period` is part of the cache key only: a new period asks again."""
    function = getattr(queries, query)
    with _reader(source).cursor() as con:
        return function(con, *args, **dict(kwargs))


def ask(query: Callable[Concatenate[duckdb.DuckDBPyConnection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """The answer of a `warehouse.queries` function on the configured catalog, at most `ttl_seconds` old."""
    if getattr(queries, query.__name__, None) is not query:
        raise ValueError(f"{query.__name__} is not a function of warehouse.queries")
    current = settings()
    period = int(time.time() // current.ttl_seconds)
    answer = _answer(current.source(), query.__name__, args, tuple(sorted(kwargs.items())), period)
    return cast(T, answer)


def refresh() -> None:
    """Forget every cached answer: the next question reads the warehouse again."""
    _answer.clear()


def report_file(path: str) -> Path | None:
    """A monitoring report's HTML file, or None when it is gone (only `.html` files are shown)."""
    report = Path(path)
    return report if report.suffix == ".html" and report.is_file() else None


def export_csv(where: queries.PredictionFilter, max_rows: int) -> Callable[[], bytes]:
    """What a download button calls when clicked (not on every rerun): the filtered rows as CSV."""
    current = reader()

    def write() -> bytes:
        with current.cursor() as con:
            return queries.export_predictions(con, where, max_rows).data

    return write


def export_monitoring_csv(first_day: date | None, last_day: date | None) -> Callable[[], bytes]:
    """What the monitoring download calls when clicked: the monitoring rows of windows ending in the range."""
    current = reader()

    def write() -> bytes:
        with current.cursor() as con:
            return queries.export_monitoring(con, first_day, last_day)

    return write
