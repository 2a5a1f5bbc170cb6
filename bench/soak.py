"""`make bench-soak`: a cycle and the dashboard on the warehouse 100 days of the schedule leave, against an empty one.

The soaked warehouse is built through the warehouse's own write path, faster than real time: every
15-minute slot of every day commits one ingest block (a records batch after its quarantine batch, the
records' ids checked against the snapshot, as `ingest` commits them), one scoring unit carrying the score
watermark (as `score` commits it) and, every fourth slot, a label batch; once a day `predictions_current`
is brought up to date and the `maintain` steps run (retention, compaction, checkpoint, vacuum). Records and
scores are synthetic (no model runs while building), shaped by the dataset contract. The simulated days end
today. Batch ids carry their simulated time, so the 30-day retention of batch ids applies as on the schedule.
Files and log entries expire by the clock, and simulated days pass in seconds: the build keeps none of them
until the last 7 simulated days, then the real 7-day retention, so the warehouse ends holding what the
schedule leaves, 7 days of log and replaced files.

Then, on the soaked warehouse and on an empty one with the same champion, in one run: the real `ingest` and
`score` flows on one 1,000-row file (the cycle), the dashboard's landing and filtered queries, a record
lookup, and the files per table. Results go into artifacts/bench/results.json (merged with what is there).

    uv run python -m bench.soak --days 100
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.dashboard_bench import feedback_batch, predictions_batch, quarantine_batch, records_batch, time_queries
from bench.run import OUT, make_config
from flows import _environment
from pipeline.config import Dataset, load_settings
from warehouse import queries
from warehouse.catalog import build_catalog
from warehouse.maintenance import Retention, compact, retain, vacuum
from warehouse.scoring import refresh_current, watermark_app
from warehouse.store import Warehouse, batch_id

SLOTS_PER_DAY = 96  # the 15-minute schedule
CYCLE_ROWS = 1_000
KEPT_DAYS = 7  # `maintenance.retention_days`: replaced files and log entries
BATCH_IDS_DAYS = 30  # `maintenance.batch_ids_days`


def build(
    store: Warehouse, dataset: Dataset, days: int, rows_per_slot: int, champion: str, say: Any
) -> dict[str, float]:
    """Commit `days` of the schedule into `store`; returns how long it took."""
    rng = np.random.default_rng(7)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
    number = 0
    at = start
    store.clock = lambda: at  # batch ids are stamped with the simulated time
    started = time.perf_counter()
    for day in range(days):
        for slot in range(SLOTS_PER_DAY):
            at = start + timedelta(days=day, minutes=15 * slot)
            numbers = range(number, number + rows_per_slot)
            number += rows_per_slot
            block = batch_id("soak", "ingest", day, slot)
            stamp = at.date().isoformat()
            records = records_batch(dataset, numbers, at, rng)
            version = store.version("records")
            store.commit("quarantine", block, quarantine_batch(numbers, at), partition=stamp)
            store.commit("records", block, records, partition=stamp, read_version=version)
            scored = predictions_batch(numbers, champion, at + timedelta(minutes=1), rng)
            mark = [(watermark_app(champion), store.version("records"))]
            store.commit("predictions", batch_id("soak", "score", day, slot), scored, partition=stamp, marks=mark)
            if slot % 4 == 0 and number > 20 * rows_per_slot:
                labelled = range(number - 20 * rows_per_slot, number - 16 * rows_per_slot)
                labels = batch_id("soak", "labels", day, slot)
                store.commit("feedback_rejects", labels, _no_rejects(store), partition=stamp)
                store.commit("feedback", labels, feedback_batch(labelled, at, rng), partition=stamp)
        refresh_current(store)
        keep_hours = 0.0 if day < days - KEPT_DAYS else KEPT_DAYS * 24.0
        for name in store.tables:
            retain(store, name, Retention(files_hours=keep_hours, batch_ids_hours=BATCH_IDS_DAYS * 24))
            compact(store, name, target_mb=128)
            vacuum(store, name, retention_hours=keep_hours)
        if (day + 1) % 10 == 0:
            say(f"  day {day + 1}: {number:,} records, {time.perf_counter() - started:.0f} s")
    build_catalog(store)
    return {"build_s": time.perf_counter() - started, "records": float(number)}


def _no_rejects(store: Warehouse) -> Any:
    return store.table("feedback_rejects").schema.empty_table()


def cycle_seconds(config: Path, rows: pd.DataFrame, name: str) -> float:
    """The real `ingest` then `score` flows on one file of `rows`."""
    from flows.ingest import ingest
    from flows.score import score

    incoming = load_settings(config).incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    rows.to_csv(incoming / name, index=False)
    started = time.perf_counter()
    ingest(str(config))
    scored = score(str(config)).scored
    seconds = time.perf_counter() - started
    if scored != len(rows):  # a cycle that stored nothing would measure nothing
        raise RuntimeError(f"the cycle on {config} scored {scored} records of {len(rows)}")
    return seconds


def record_lookup_seconds(catalog: Path, repeats: int = 5) -> float:
    reader = queries.CatalogReader(catalog)
    seconds = []
    for _ in range(repeats):
        with reader.cursor() as con:
            record_id = queries.recent_record_ids(con, 1)[0]
            started = time.perf_counter()
            queries.record(con, record_id)
            queries.record_predictions(con, record_id)
            queries.record_labels(con, record_id)
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def file_counts(store: Warehouse) -> dict[str, dict[str, int]]:
    """Per table: files its snapshot lists, and files on disk (data files, log, checkpoints)."""
    return {
        name: {
            "snapshot": len(store.files(name)),
            "on_disk": sum(1 for p in (store.root / name).rglob("*") if p.is_file()),
        }
        for name in store.tables
    }


def arrivals(n: int, offset: int) -> pd.DataFrame:
    """A 1,000-row file of the sample's rows under ids no run used before, as an upstream system drops it."""
    settings = load_settings()
    sample = pd.read_csv(settings.reference_path, dtype=str, keep_default_na=False)
    rows = sample.drop(columns=[settings.dataset.target_column]).iloc[:n].copy()
    run = uuid.uuid4().hex[:8]  # a re-measured warehouse already holds the ids of earlier runs
    rows[settings.dataset.id_column] = [f"cycle-{run}-{offset}-{i:05d}" for i in range(n)]
    return rows


def measure(config: Path, say: Any) -> dict[str, Any]:
    from flows.runtime import open_store

    settings = load_settings(config)
    cycles = [cycle_seconds(config, arrivals(CYCLE_ROWS, i), f"cycle-{i}.csv") for i in range(3)]
    store = open_store(settings)
    build_catalog(store)
    dashboard = time_queries(settings.catalog_path)
    say(f"  cycles {', '.join(f'{c:.1f}' for c in cycles)} s; landing {dashboard['landing_s']:.2f} s")
    return {
        "cycle_s": statistics.median(cycles[1:]),  # the first pays the flows' imports and first connections
        "landing_s": dashboard["landing_s"],
        "filtered_s": dashboard["filtered_s"],
        "record_lookup_s": record_lookup_seconds(settings.catalog_path),
        "files": file_counts(store),
    }


def main() -> None:
    _environment.apply_defaults()  # offline and quiet, as the CLI runs flows
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--rows-per-slot", type=int, default=110, help="records per 15-minute batch")
    parser.add_argument(
        "--measure-only", action="store_true", help="measure the warehouses the last build left, without building"
    )
    args = parser.parse_args()
    say = lambda line: print(line, flush=True)  # noqa: E731
    from flows.runtime import open_store, without_heartbeats
    from flows.train import train

    work = OUT / "soak"
    path = OUT / "results.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    if args.measure_only:
        configs = {name: work / name / "scorehouse.toml" for name in ("empty", "soaked")}
        built = {"build_s": existing["soak_build_s"], "records": existing["soak_records"]}
    else:
        shutil.rmtree(work, ignore_errors=True)
        configs = {name: make_config(work / name) for name in ("empty", "soaked")}
    with without_heartbeats():
        if not args.measure_only:
            for config in configs.values():
                train(str(config))
            settings = load_settings(configs["soaked"])
            say(f"building {args.days} days x {SLOTS_PER_DAY} slots x {args.rows_per_slot} records ...")
            built = build(open_store(settings), settings.dataset, args.days, args.rows_per_slot, "v1", say)
            path.write_text(
                json.dumps({**existing, "soak_build_s": built["build_s"], "soak_records": built["records"]})
            )
            existing = json.loads(path.read_text())
        results: dict[str, Any] = {}
        for name, config in configs.items():
            say(f"measuring the {name} warehouse ...")
            results[name] = measure(config, say)
    soaked, empty = results["soaked"], results["empty"]
    summary = {
        "soak_days": args.days,
        "soak_batches_per_table": args.days * SLOTS_PER_DAY,
        "soak_records": built["records"],
        "soak_build_s": built["build_s"],
        "soak_cycle_s": soaked["cycle_s"],
        "empty_cycle_s": empty["cycle_s"],
        "soak_cycle_over_empty": soaked["cycle_s"] / empty["cycle_s"],
        "soak_dashboard_landing_s": soaked["landing_s"],
        "soak_dashboard_filtered_s": soaked["filtered_s"],
        "soak_record_lookup_s": soaked["record_lookup_s"],
        "soak_files_per_table": {t: c["snapshot"] for t, c in soaked["files"].items()},
        "soak_files_on_disk_per_table": {t: c["on_disk"] for t, c in soaked["files"].items()},
    }
    path.write_text(json.dumps({**existing, **summary}, indent=2))
    print_table(summary, empty)


def print_table(s: dict[str, Any], empty: dict[str, Any]) -> None:
    print(
        f"{'soaked warehouse':<34}{s['soak_days']} days, {s['soak_records']:,.0f} records, "
        f"built in {s['soak_build_s']:.0f} s"
    )
    print(
        f"{'cycle (ingest + score, 1,000 rows)':<34}{s['soak_cycle_s']:.2f} s vs {s['empty_cycle_s']:.2f} s empty: "
        f"x{s['soak_cycle_over_empty']:.2f} (<= 1.5)"
    )
    print(
        f"{'dashboard landing / filtered':<34}{s['soak_dashboard_landing_s']:.2f} s / "
        f"{s['soak_dashboard_filtered_s']:.2f} s (< 1 s); empty {empty['landing_s']:.2f} s"
    )
    print(f"{'record lookup':<34}{s['soak_record_lookup_s']:.3f} s; empty {empty['record_lookup_s']:.3f} s")
    for table, n in s["soak_files_per_table"].items():
        print(f"  {table:<32}{n:>6} files in the snapshot, {s['soak_files_on_disk_per_table'][table]:>6} on disk")


if __name__ == "__main__":
    np.seterr(all="ignore")
    started = time.perf_counter()
    main()
    print(f"soak bench took {time.perf_counter() - started:.0f} s")
