"""Dashboard timings on a large synthetic warehouse: does the landing page and a filtered page of the
predictions table come back in under a second on ten million predictions?

The warehouse is generated with numpy and pyarrow straight into a `Warehouse` under a temporary root
(the real layout, schemas and catalog; the dataset contract of the config), so no model runs: about
80% of the predictions score each record on its arrival day with v1, the rest are v2 re-scoring the
latest records on the day it was promoted. A third of the records get a label two days later. The
timed calls are the `warehouse.queries` functions the dashboard pages make, through a fresh
`CatalogReader`; "first" is the first call on that reader, "repeat" the median of the next ones.

    uv run python bench/dashboard_bench.py --rows 10000000
    uv run python bench/dashboard_bench.py --catalog data/warehouse/warehouse.duckdb   # any warehouse
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import Dataset, load_settings
from warehouse import queries
from warehouse.catalog import build_catalog
from warehouse.layout import TS, open_warehouse
from warehouse.scoring import refresh_current
from warehouse.store import Warehouse

THRESHOLD = 0.1
CHUNK_ROWS = 250_000  # one committed batch file holds at most this many rows, like a scoring chunk
EMBEDDING_SIZE = 8
LABELLED_SHARE = 0.3
LABEL_LAG_DAYS = 2


@dataclass(frozen=True)
class Plan:
    """How the synthetic warehouse is laid out in time."""

    rows: int  # predictions in total
    days: int
    start: date

    @property
    def records(self) -> int:
        return round(self.rows * 0.8)

    @property
    def rescored(self) -> int:
        return self.rows - self.records

    def day(self, index: int) -> date:
        return self.start + timedelta(days=index)

    def at(self, index: int, hour: int = 6) -> datetime:
        return datetime.combine(self.day(index), datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour)

    def arrivals(self, index: int) -> range:
        """The record numbers that arrive on day `index`."""
        per_day = -(-self.records // self.days)
        return range(index * per_day, min((index + 1) * per_day, self.records))


def record_ids(numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise("R", pc.utf8_lpad(pa.array(numbers).cast(pa.string()), 9, "0"), "")


def _timestamps(at: datetime, n: int) -> pa.Array:
    return pa.array(np.full(n, int(at.timestamp() * 1_000_000), dtype="int64")).cast(TS)


def _chunks(numbers: range) -> Iterator[range]:
    for start in range(numbers.start, numbers.stop, CHUNK_ROWS):
        yield range(start, min(start + CHUNK_ROWS, numbers.stop))


def records_batch(dataset: Dataset, numbers: range, at: datetime, rng: np.random.Generator) -> pa.Table:
    n = len(numbers)
    columns: dict[str, Any] = {"record_id": record_ids(np.arange(numbers.start, numbers.stop))}
    for feature in dataset.features:
        if feature.kind == "numeric":
            low, high = feature.min or 0.0, feature.max or 1_000.0
            columns[feature.name] = np.clip(rng.gamma(2.0, (high - low) / 50, n) + low, low, high)
        else:
            columns[feature.name] = pa.array(rng.choice(feature.allowed or ["x", "y"], n)).cast(pa.string())
    columns |= {
        "source_file": pa.array([f"day-{at:%Y%m%d}.csv"] * n),
        "row_number": np.arange(1, n + 1),
        "row_hash": np.zeros(n, dtype=np.int64),
        "ingested_at": _timestamps(at, n),
    }
    return pa.table(columns)


def predictions_batch(numbers: range, version: str, at: datetime, rng: np.random.Generator) -> pa.Table:
    n = len(numbers)
    score = rng.beta(1.2, 12.0, n)
    flat = pa.array(rng.standard_normal(n * EMBEDDING_SIZE, dtype=np.float32))
    embedding = pa.FixedSizeListArray.from_arrays(flat, EMBEDDING_SIZE).cast(pa.list_(pa.float32()))
    return pa.table(
        {
            "record_id": record_ids(np.arange(numbers.start, numbers.stop)),
            "model_version": pa.array([version] * n),
            "score": score,
            "label": pa.array(np.where(score >= THRESHOLD, "bad", "good")),
            "threshold": np.full(n, THRESHOLD),
            "embedding": embedding,
            "scored_at": _timestamps(at, n),
        }
    )


def feedback_batch(numbers: range, at: datetime, rng: np.random.Generator) -> pa.Table:
    chosen = np.sort(rng.choice(np.arange(numbers.start, numbers.stop), round(len(numbers) * LABELLED_SHARE), False))
    n = len(chosen)
    return pa.table(
        {
            "record_id": record_ids(chosen),
            "label": pa.array(np.where(rng.uniform(size=n) < 0.07, "bad", "good")),
            "labelled_at": _timestamps(at - timedelta(hours=1), n),
            "source_file": pa.array([f"labels-{at:%Y%m%d}.csv"] * n),
            "row_number": np.arange(1, n + 1),
            "received_at": _timestamps(at, n),
        }
    )


def quarantine_batch(numbers: range, at: datetime) -> pa.Table:
    ids = record_ids(np.arange(numbers.start, numbers.start + max(1, len(numbers) // 2000)))
    n = len(ids)
    return pa.table(
        {
            "record_id": ids,
            "source_file": pa.array([f"day-{at:%Y%m%d}.csv"] * n),
            "row_number": np.arange(1, n + 1),
            "column_name": pa.array(["int_rate"] * n),
            "rule": pa.array(["numeric"] * n),
            "value": pa.array(["'n/a'"] * n),
            "reason": pa.array(["int_rate: not a number (got 'n/a')"] * n),
            "raw": pa.array(["{}"] * n),
            "quarantined_at": _timestamps(at, n),
        }
    )


def monitoring_batch(report: str, version: str, at: datetime, rng: np.random.Generator) -> pa.Table:
    metrics = [*queries.DRIFT_SHARES, queries.PREDICTION_DRIFT, *queries.QUALITY_METRICS, "retrain_due"]
    values = rng.uniform(0.0, 0.9, len(metrics))
    return pa.Table.from_pylist(
        [
            {
                "report_id": report,
                "run_at": at,
                "window_start": at - timedelta(days=3),
                "window_end": at,
                "model_version": version,
                "metric": metric,
                "column_name": "score" if metric == queries.PREDICTION_DRIFT else None,
                "value": float(value),
                "threshold": 0.5 if metric in queries.DRIFT_SHARES else None,
                "status": "alert" if metric in queries.DRIFT_SHARES and value > 0.5 else "ok",
                "sample_size": 50_000,
                "sampled": True,
                "detail": "synthetic",
                "report_path": f"/nonexistent/{report}.html",
            }
            for metric, value in zip(metrics, values, strict=True)
        ]
    )


def model_events(plan: Plan) -> pa.Table:
    def event(version: str, kind: str, at: datetime, reason: str) -> dict[str, Any]:
        return {
            "model_version": version,
            "event": kind,
            "event_at": at,
            "reason": reason,
            "actor": "bench",
            "roc_auc": 0.76,
            "f1": 0.21,
            "precision": 0.15,
            "recall": 0.4,
            "balanced_accuracy": 0.63,
            "metrics_json": "{}",
            "model_input": "features",
            "embedding_size": EMBEDDING_SIZE,
            "threshold": THRESHOLD,
            "train_rows": 3000,
            "holdout_rows": 1000,
            "data_from": "R000000000",
            "data_to": "R000003000",
            "fingerprint": version,
            "artifact_dir": f"/nonexistent/{version}",
            "artifact_sha256": "{}",
        }

    first, last = plan.at(0, hour=5), plan.at(plan.days - 1, hour=5)
    return pa.Table.from_pylist(
        [
            event("v1", "trained", first, "trained on the reference data"),
            event("v1", "promoted", first, "first model: there was no champion"),
            event("v2", "trained", last, "challenger to v1"),
            event("v2", "promoted", last, "promoted: v2 beat v1"),
            event("v1", "retired", last, "replaced by v2"),
        ]
    )


def build(root: Path, rows: int, days: int = 40, config: str | None = None, seed: int = 0) -> Path:
    """Generate the warehouse under `root` and build its catalog; returns the catalog's path."""
    dataset = load_settings(config).dataset
    store: Warehouse = open_warehouse(root, {f.name: f.kind for f in dataset.features}, event_time=False)
    store.init()
    rng = np.random.default_rng(seed)
    plan = Plan(rows=rows, days=days, start=date(2026, 1, 1))
    store.commit("models", "models", model_events(plan), partition=plan.day(0).isoformat())
    for index in range(plan.days):
        at, day, arrivals = plan.at(index), plan.day(index).isoformat(), plan.arrivals(index)
        store.commit("quarantine", f"q{index}", quarantine_batch(arrivals, at), partition=day)
        for part, numbers in enumerate(_chunks(arrivals)):
            records = records_batch(dataset, numbers, at, rng)
            store.commit("records", f"r{index}-{part}", records, partition=day, read_version=store.version("records"))
            batch = predictions_batch(numbers, "v1", at + timedelta(minutes=5), rng)
            store.commit("predictions", f"p{index}-{part}", batch, partition=day)
        if index >= LABEL_LAG_DAYS:
            labelled = plan.arrivals(index - LABEL_LAG_DAYS)
            store.commit("feedback", f"f{index}", feedback_batch(labelled, at, rng), partition=day)
        if index >= 1:
            report = monitoring_batch(f"m{index}", "v1", at + timedelta(minutes=10), rng)
            store.commit("monitoring", f"m{index}", report, partition=day)
    last, day = plan.days - 1, plan.day(plan.days - 1).isoformat()
    for part, numbers in enumerate(_chunks(range(plan.records - plan.rescored, plan.records))):
        batch = predictions_batch(numbers, "v2", plan.at(last, hour=7), rng)
        store.commit("predictions", f"v2-{part}", batch, partition=day)
    refresh_current(store)
    return build_catalog(store)


def landing(con: Any) -> None:
    """What the overview page asks for."""
    queries.totals(con)
    queries.champion(con)
    queries.last_ingest(con)
    queries.last_scoring(con)
    queries.last_alert(con)
    queries.quarantine_reasons(con)


def filtered_page(where: queries.PredictionFilter) -> Callable[[Any], None]:
    """What the predictions page asks for with a filter: its options, counts and histogram, page 3."""

    def run(con: Any) -> None:
        queries.prediction_options(con)
        queries.score_histogram(con, where)
        queries.prediction_page(con, where, limit=50, offset=100)

    return run


def record_page(con: Any) -> None:
    """What the record page asks for, for one of the latest scored records."""
    record_id = queries.recent_record_ids(con, 1)[0]
    queries.record(con, record_id)
    history = queries.record_predictions(con, record_id)
    queries.record_labels(con, record_id)
    queries.record_quarantine(con, record_id)
    queries.score_rank(con, str(history["model_version"].iloc[-1]), float(history["score"].iloc[-1]))


def typical_filter(options: queries.PredictionOptions) -> queries.PredictionFilter:
    """A viewer's usual question, from the values present: the last 7 scoring days, the latest version,
    one predicted label, scores from 0.2 to 0.8."""
    last = options.last_day or date.today()
    return queries.PredictionFilter(
        scored_from=last - timedelta(days=6),
        scored_to=last,
        model_versions=options.model_versions[-1:],
        labels=options.labels[:1],
        score_min=0.2,
        score_max=0.8,
    )


def scenarios(typical: queries.PredictionFilter, id_prefix: str) -> dict[str, Callable[[Any], None]]:
    """Every timed page; "landing" and "filtered" are the two the issue sets a one-second target for."""
    return {
        "landing": landing,
        "filtered": filtered_page(typical),
        "no filter": filtered_page(queries.PredictionFilter()),
        "labelled, last 7 days": filtered_page(
            queries.PredictionFilter(labelled=True, scored_from=typical.scored_from, scored_to=typical.scored_to)
        ),
        "labelled + score >= 0.3, all days": filtered_page(queries.PredictionFilter(labelled=True, score_min=0.3)),
        f"record id starts with {id_prefix}": filtered_page(queries.PredictionFilter(record_id=id_prefix)),
        "record page": record_page,
    }


def time_scenarios(catalog: Path, repeats: int = 5) -> tuple[queries.PredictionFilter, dict[str, tuple[float, float]]]:
    """The typical filter, and seconds per scenario: (first call on a fresh reader, median of the
    `repeats` calls after it)."""
    reader = queries.CatalogReader(catalog)
    with reader.cursor() as con:
        typical = typical_filter(queries.prediction_options(con))
        id_prefix = "".join(queries.recent_record_ids(con, 1))[:-3]  # about a thousand ids
    timings: dict[str, tuple[float, float]] = {}
    for name, scenario in scenarios(typical, id_prefix).items():
        seconds = []
        for _ in range(repeats + 1):
            with reader.cursor() as con:
                started = time.perf_counter()
                scenario(con)
                seconds.append(time.perf_counter() - started)
        timings[name] = (seconds[0], statistics.median(seconds[1:]))
    return typical, timings


def time_queries(catalog: Path, repeats: int = 5) -> dict[str, float]:
    """The two numbers `make bench` reports: the landing page and a filtered predictions page, in
    seconds (median of `repeats` after a first call), plus the first calls."""
    _, timings = time_scenarios(catalog, repeats)
    return {
        "landing_s": timings["landing"][1],
        "filtered_s": timings["filtered"][1],
        "landing_first_s": timings["landing"][0],
        "filtered_first_s": timings["filtered"][0],
    }


def report(typical: queries.PredictionFilter, timings: dict[str, tuple[float, float]]) -> str:
    versions, labels = ", ".join(typical.model_versions) or "any version", ", ".join(typical.labels) or "any label"
    lines = [
        f"filtered = scored {typical.scored_from} .. {typical.scored_to}, {versions}, {labels}, score 0.2-0.8",
        f"{'dashboard page (queries only)':<32} {'first':>8} {'repeat':>8}",
        *(f"{name:<32} {first:>7.3f}s {repeat:>7.3f}s" for name, (first, repeat) in timings.items()),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="predictions to generate")
    parser.add_argument("--days", type=int, default=40, help="days of arrivals")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", default=None, help="config whose dataset contract shapes `records`")
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep it (default: a temp folder)")
    parser.add_argument("--catalog", type=Path, default=None, help="time this catalog instead of building one")
    args = parser.parse_args()

    if args.catalog is not None:
        print(report(*time_scenarios(args.catalog, args.repeats)))
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="scorehouse-dashboard-bench-"))
    try:
        started = time.perf_counter()
        catalog = build(root, args.rows, days=args.days, config=args.config)
        print(f"built {args.rows:,} predictions in {time.perf_counter() - started:.0f} s under {root}")
        print(report(*time_scenarios(catalog, args.repeats)))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
