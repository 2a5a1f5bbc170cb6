"""The demo: from a clean state, train the first champion and run simulated days through the real flows.

What is simulated: the calendar (each day's flows run with the clock set to that day), the arrival
of records as daily files without their outcome, the outcomes arriving as label files `label_lag`
days later, malformed rows on one day, and a population shift on the last days. The loans and their
outcomes are the sample's own. All flows run in this one process: Prefect starts its temporary API
once (about 20 s), not per flow.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from flows.cycle import scoring_cycle
from flows.runtime import open_store, settings_from, simulated_time, utc_now, without_heartbeats
from flows.train import train
from pipeline import simulate
from pipeline.config import ConfigError, Settings
from pipeline.validate import read_incoming
from warehouse.catalog import catalog_path
from warehouse.status import warehouse_status

MALFORMED_DAY = 3


def reset(settings: Settings) -> None:
    """Empty the run-time folders this config names (their .gitkeep stays)."""
    if settings.warehouse_is_remote:
        raise ConfigError(
            "the demo starts from an empty warehouse and never empties object storage "
            f"({settings.warehouse_location}); point paths.warehouse at a local folder to run it"
        )
    for folder in (
        settings.warehouse_dir,
        settings.models_dir,
        settings.reports_dir,
        settings.incoming_dir,
        settings.feedback_dir,
        settings.processed_dir,
        settings.rejected_dir,
    ):
        folder.mkdir(parents=True, exist_ok=True)
        for child in folder.iterdir():
            if child.name == ".gitkeep":
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def drop(frame: pd.DataFrame, folder: Path, name: str) -> Path:
    """Write a file into a drop folder the way an upstream system should: whole, then renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.partial"
    frame.to_csv(partial, index=False)
    return partial.replace(folder / name)


def run_demo(
    config: str | None = None,
    days: int = 8,
    label_lag: int = 2,
    shift_from_day: int = 6,
    say: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Reset the run-time folders, train, and run `days` simulated days through the real flows."""
    with without_heartbeats():
        return _run_demo(config, days, label_lag, shift_from_day, say)


def _run_demo(
    config: str | None, days: int, label_lag: int, shift_from_day: int, say: Callable[[str], Any]
) -> dict[str, Any]:
    settings = settings_from(config)
    dataset = settings.dataset
    reset(settings)
    start = datetime.combine(utc_now().date() - timedelta(days=days + 1), time(6), tzinfo=UTC)
    share = settings.training.reference_fraction
    say(f"[1/3] training the first champion on {settings.reference_path.name} (its first {share:.0%})")
    with simulated_time(start):
        first = train(config)
    sample = read_incoming(settings.reference_path).to_pandas()
    reference_rows = round(len(sample) * share)
    parts = simulate.arrivals(sample, reference_rows, days)
    say(
        f"[2/3] {days} simulated days, {sum(len(p) for p in parts)} loans; labels arrive {label_lag} days late; "
        f"malformed rows on day {MALFORMED_DAY}; half the numeric features shifted from day {shift_from_day}"
    )
    cycles = []
    for day, rows in enumerate(parts, start=1):
        today = start + timedelta(days=day)
        records = simulate.records_file(rows, dataset)
        if day >= shift_from_day:
            records = simulate.shifted(records, dataset, sample.iloc[:reference_rows], seed=0)
        if day == MALFORMED_DAY:
            records = simulate.with_malformed_rows(records, dataset, seed=day)
            (settings.incoming_dir / f"day-{day:02d}-truncated.parquet").write_bytes(b"PAR1 cut off in transit")
        drop(records, settings.incoming_dir, f"day-{day:02d}-records.csv")
        if day > label_lag:
            labelled = parts[day - 1 - label_lag]
            drop(
                simulate.labels_file(labelled, dataset, today.date()),
                settings.feedback_dir,
                f"day-{day:02d}-labels.csv",
            )
        with simulated_time(today):
            cycle = scoring_cycle(config)
        cycles.append(cycle)
        say(f"      day {day} ({today:%Y-%m-%d}): {_describe(cycle)}")
    store = open_store(settings)
    with store.connect() as con:
        status = warehouse_status(con)
        decisions = con.execute(
            "SELECT model_version, event, reason FROM models WHERE event IN ('promoted', 'rejected') ORDER BY event_at"
        ).fetchall()
        alerts = con.execute("SELECT count(DISTINCT report_id) FROM monitoring_alerts").fetchone()
    say("[3/3] done")
    return {
        "first_champion": first,
        "status": status,
        "decisions": decisions,
        "reports": sorted(str(p) for p in settings.reports_dir.glob("*.html")),
        "reports_with_alerts": alerts[0] if alerts else 0,
        "catalog": str(catalog_path(store)),
    }


def _describe(cycle: Any) -> str:
    parts = [f"{cycle.scored.scored} scored by {cycle.scored.model_version}", f"{cycle.labels} labels"]
    if cycle.monitor.alerts:
        parts.append(f"ALERT {', '.join(cycle.monitor.alerts)}")
    if cycle.retrain is not None:
        parts.append(f"retrain -> {cycle.retrain.reason}")
    return "; ".join(parts)
