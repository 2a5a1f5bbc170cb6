"""The demo: from a clean state, train the first champion and run simulated days through the real flows.

What is simulated: the calendar (each day's flows run with the clock set to that day), the arrival
of records as daily files without their outcome, the outcomes arriving as label files `label_lag`
days later, malformed rows on one day, and a population shift on the last days. The loans and their
outcomes are the sample's own. All flows run in this one process: Prefect starts its temporary API
once (about 20 s), not per flow.

The demo starts by emptying the run-time folders of its config, so it refuses to empty folders that hold
data it did not create: it marks the warehouse it creates with `MARKER`, and anything else needs a yes.
"""

from __future__ import annotations

import os
import shutil
import time as clock
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
MARKER = ".scorehouse-demo"  # in the warehouse folder: the demo created this warehouse and may empty it again
KEEP = frozenset({".gitkeep", MARKER})


class ResetRefused(RuntimeError):
    """The demo would empty folders holding data it did not create, and nobody said yes."""


def _run_time_folders(settings: Settings) -> list[Path]:
    return [
        settings.warehouse_dir,
        settings.models_dir,
        settings.reports_dir,
        settings.incoming_dir,
        settings.feedback_dir,
        settings.processed_dir,
        settings.rejected_dir,
    ]


def foreign_data(settings: Settings) -> list[Path]:
    """The run-time folders that hold something, when the warehouse is not one the demo created."""
    if (settings.warehouse_dir / MARKER).is_file():
        return []
    return [f for f in _run_time_folders(settings) if f.is_dir() and any(c.name not in KEEP for c in f.iterdir())]


def reset(settings: Settings, confirm: Callable[[str], bool] = lambda question: False) -> None:
    """Empty the run-time folders this config names (their .gitkeep stays), then mark the warehouse as the demo's.

    Folders holding data the demo did not create are emptied only if `confirm` says yes to the question.
    """
    if settings.warehouse_is_remote:
        raise ConfigError(
            "the demo starts from an empty warehouse and never empties object storage "
            f"({settings.warehouse_location}); point paths.warehouse at a local folder to run it"
        )
    occupied = foreign_data(settings)
    if occupied:
        shown = ", ".join(str(f) for f in occupied[:3]) + (", ..." if len(occupied) > 3 else "")
        question = f"the demo empties its folders first, and {shown} hold(s) data the demo did not create"
        if not confirm(f"{question}. Delete it?"):
            raise ResetRefused(
                f"{question}: run `scorehouse demo --yes` to delete it anyway, or pass --config with a project "
                "of its own"
            )
    for folder in _run_time_folders(settings):
        folder.mkdir(parents=True, exist_ok=True)
        for child in folder.iterdir():
            if child.name == ".gitkeep":
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    (settings.warehouse_dir / MARKER).write_text("created by `scorehouse demo`, which may empty this folder again\n")


def wait_until_settled(settings: Settings) -> float:
    """Sleep until the files just dropped are older than `drop.settle_seconds`, so the cycle takes them.

    Returns the seconds slept. The demo writes whole files and renames them, as the README asks of a
    writer; the flows still wait for the settling window, as they would for any writer.
    """
    newest = max(
        (p.stat().st_mtime for d in (settings.incoming_dir, settings.feedback_dir) if d.is_dir() for p in d.iterdir()),
        default=0.0,
    )
    pause = max(newest + settings.drop.settle_seconds - clock.time(), 0.0)
    clock.sleep(pause + (0.05 if pause else 0.0))
    return pause


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
    confirm: Callable[[str], bool] = lambda question: False,
) -> dict[str, Any]:
    """Reset the run-time folders (see `reset`), train, and run `days` simulated days through the real flows."""
    settings = settings_from(config)
    reset(settings, confirm)
    with without_heartbeats():
        return _run_demo(config, days, label_lag, shift_from_day, say)


def _run_demo(
    config: str | None, days: int, label_lag: int, shift_from_day: int, say: Callable[[str], Any]
) -> dict[str, Any]:
    settings = settings_from(config)
    dataset = settings.dataset
    start = datetime.combine(utc_now().date() - timedelta(days=days + 1), time(6), tzinfo=UTC)
    share = settings.training.reference_fraction
    if not os.environ.get("PREFECT_API_URL"):
        say(
            "      starting Prefect's temporary API for this process: about 20 s on an idle machine, minutes on a "
            "busy one (`make server` and PREFECT_API_URL skip it)"
        )
    say(f"[1/3] training the first champion on {settings.reference_path.name} (its first {share:.0%})")
    with simulated_time(start):
        first = train(config)
    sample = read_incoming(settings.reference_path).to_pandas()
    reference_rows = round(len(sample) * share)
    parts = simulate.arrivals(sample, reference_rows, days)
    say(
        f"[2/3] {days} simulated days, {sum(len(p) for p in parts)} loans; labels arrive {label_lag} days late; "
        f"malformed rows on day {MALFORMED_DAY}; half the numeric features shifted from day {shift_from_day}; "
        f"each day's files settle {settings.drop.settle_seconds:g} s before they are taken (drop.settle_seconds)"
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
            drop(  # labelled the day before they arrive: a label time is never later than its arrival
                simulate.labels_file(labelled, dataset, (today - timedelta(days=1)).date()),
                settings.feedback_dir,
                f"day-{day:02d}-labels.csv",
            )
        wait_until_settled(settings)
        with simulated_time(today):
            cycle = scoring_cycle(config)
        cycles.append(cycle)
        say(f"      day {day} ({today:%Y-%m-%d}): {_describe(cycle)}")
    store = open_store(settings)
    with store.connect() as con:
        status = warehouse_status(con)  # its alert counts are the one notion the dashboard shows too
        decisions = con.execute(
            "SELECT model_version, event, reason FROM models WHERE event IN ('promoted', 'rejected') ORDER BY event_at"
        ).fetchall()
    say("[3/3] done")
    return {
        "first_champion": first,
        "status": status,
        "decisions": decisions,
        "reports": sorted(str(p) for p in settings.reports_dir.glob("*.html")),
        "catalog": str(catalog_path(store)),
        "config": None if config is None else str(Path(config).resolve()),
    }


def _describe(cycle: Any) -> str:
    parts = [f"{cycle.scored.scored} scored by {cycle.scored.model_version}", f"{cycle.labels} labels"]
    if cycle.monitor.alerts:
        parts.append(f"ALERT {', '.join(cycle.monitor.alerts)}")
    if cycle.retrain is not None:
        parts.append(f"retrain -> {cycle.retrain.reason}")
    return "; ".join(parts)
