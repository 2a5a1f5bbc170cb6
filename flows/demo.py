"""The demo: from a clean state, train the first champion and run simulated days through the real flows.

All flows run in this one process: Prefect starts its temporary API once (about 20 s), not per flow.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pandas as pd

from flows.cycle import scoring_cycle
from flows.runtime import open_store, settings_from
from flows.train import train
from pipeline import simulate
from pipeline.config import Settings
from pipeline.validate import read_incoming
from warehouse.catalog import catalog_path
from warehouse.status import warehouse_status

MALFORMED_DAY = 3


def reset(settings: Settings) -> None:
    """Empty the run-time folders this config names (their .gitkeep stays)."""
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


def run_demo(config: str | None = None, days: int = 6, label_lag: int = 2, say=print) -> dict:  # type: ignore[no-untyped-def,type-arg]
    settings = settings_from(config)
    dataset = settings.dataset
    reset(settings)
    say(
        f"[1/3] training the first champion on {settings.reference_path.name} (first {settings.training.reference_fraction:.0%})"
    )
    version = train(config)
    sample = read_incoming(settings.reference_path)
    reference_rows = round(len(sample) * settings.training.reference_fraction)
    parts = simulate.arrivals(sample, reference_rows, days)
    first_day = date.today()
    say(
        f"[2/3] {days} simulated days of arrivals ({sum(len(p) for p in parts)} records); labels arrive {label_lag} days late"
    )
    for day, rows in enumerate(parts, start=1):
        today = simulate.day_date(first_day, day)
        records = simulate.records_file(rows, dataset)
        if day == MALFORMED_DAY:
            records = simulate.with_malformed_rows(records, dataset, seed=day)
            (settings.incoming_dir / f"day-{day:02d}-truncated.parquet").write_bytes(b"PAR1 cut off in transit")
        drop(records, settings.incoming_dir, f"day-{day:02d}-records.csv")
        if day > label_lag:
            labelled = parts[day - 1 - label_lag]
            drop(simulate.labels_file(labelled, dataset, today), settings.feedback_dir, f"day-{day:02d}-labels.csv")
        result = scoring_cycle(config)
        say(
            f"      day {day} ({today}): {len(records)} records dropped, {result.scored} scored by {result.model_version}"
        )
    store = open_store(settings)
    with store.connect() as con:
        status = warehouse_status(con)
    say("[3/3] done")
    return {"champion": version, "status": status, "catalog": str(catalog_path(store))}
