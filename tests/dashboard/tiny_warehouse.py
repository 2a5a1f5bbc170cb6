"""A tiny warehouse whose every number is known, built with `Warehouse.commit` (no model, no Prefect).

Six records in two files, two refused rows, twelve predictions (v1 on arrival, v2 re-scoring all six),
three label rows (a1's label corrected), three versions (v1 retired, v2 champion, v3 rejected) and two
monitoring reports (the second with alerts and one drifted column; only its HTML file exists), and the two
alert episodes the second report opened.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from warehouse.catalog import build_catalog
from warehouse.layout import ALERT_EPISODES, MODELS, MONITORING, open_warehouse
from warehouse.scoring import refresh_current
from warehouse.store import Warehouse

FEATURES: dict[str, Any] = {"amount": "numeric", "colour": "categorical"}
DAY1 = datetime(2026, 1, 1, 6, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY1 + timedelta(days=2)
THRESHOLD = 0.5

RECORDS = {  # id: (amount, colour, file, ingested_at)
    "a1": (10.0, "red", "f1.csv", DAY1),
    "a2": (20.0, "green", "f1.csv", DAY1),
    "a3": (30.0, "blue", "f1.csv", DAY1),
    "b1": (40.0, "red", "f2.csv", DAY2),
    "b2": (50.0, "green", "f2.csv", DAY2),
    "b3": (60.0, "blue", "f2.csv", DAY2),
}
SCORES = {  # (version, scored_at): {id: score}
    ("v1", DAY1 + timedelta(minutes=1)): {"a1": 0.10, "a2": 0.55, "a3": 0.90},
    ("v1", DAY2 + timedelta(minutes=1)): {"b1": 0.20, "b2": 0.45, "b3": 0.70},
    ("v2", DAY3): {"a1": 0.15, "a2": 0.60, "a3": 0.80, "b1": 0.30, "b2": 0.52, "b3": 0.65},
}
LABELS = [  # (id, label, labelled_at, received_at): a1 is corrected later, so its label is "no"
    ("a1", "yes", DAY2 - timedelta(hours=1), DAY2),
    ("a2", "yes", DAY2 - timedelta(hours=1), DAY2),
    ("a1", "no", DAY3 - timedelta(hours=1), DAY3),
]


# The Prefect flow runs that wrote some of the rows: the ingest of f2.csv, the retrain that trained and promoted v2,
# and the monitor run of the second report. Everything else was written outside a flow run (null).
RUN_INGEST = "6f1d7a52-3c1e-4b0e-9a51-1b2c3d4e5f60"
RUN_RETRAIN = "0c5e2b7d-8f41-4d2a-b9e3-7a6b5c4d3e21"
RUN_MONITOR = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@dataclass(frozen=True)
class Tiny:
    store: Warehouse
    catalog: Path
    reports: Path  # the folder holding the one report file that exists


def records_table(ids: list[str]) -> pa.Table:
    rows = [RECORDS[i] for i in ids]
    return pa.table(
        {
            "record_id": ids,
            "amount": [r[0] for r in rows],
            "colour": [r[1] for r in rows],
            "source_file": [r[2] for r in rows],
            "row_number": list(range(1, len(ids) + 1)),
            "row_hash": [0] * len(ids),
            "ingested_at": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
            "flow_run_id": pa.array([RUN_INGEST if r[2] == "f2.csv" else None for r in rows], pa.string()),
        }
    )


REASON = pa.struct([("feature", pa.string()), ("contribution", pa.float64()), ("value", pa.string())])
BASE_VALUE = -1.0


def explanation(record_id: str, score: float) -> tuple[list[float], list[dict[str, Any]]]:
    """Contributions (amount 70 %, colour 30 % of the way from the base value to the score's log-odds) and
    the reason codes: the positive ones, largest first."""
    rise = math.log(score / (1 - score)) - BASE_VALUE
    contributions = {"amount": 0.7 * rise, "colour": 0.3 * rise}
    amount, colour = RECORDS[record_id][:2] if record_id in RECORDS else (0.0, "")
    values = {"amount": str(amount), "colour": colour}
    reasons = [
        {"feature": name, "contribution": value, "value": values[name]}
        for name, value in sorted(contributions.items(), key=lambda item: -item[1])
        if value > 0
    ]
    return list(contributions.values()), reasons


def predictions_table(version: str, scored_at: datetime, scores: dict[str, float]) -> pa.Table:
    """The predictions of `version`; v1's were stored before explanations (null), later ones carry them."""
    n = len(scores)
    explained = [explanation(record_id, score) for record_id, score in scores.items()] if version != "v1" else []
    return pa.table(
        {
            "record_id": list(scores),
            "model_version": [version] * n,
            "score": list(scores.values()),
            "label": ["yes" if s >= THRESHOLD else "no" for s in scores.values()],
            "threshold": [THRESHOLD] * n,
            "embedding": pa.array([[0.1, 0.2]] * n, pa.list_(pa.float32())),
            "scored_at": pa.array([scored_at] * n, pa.timestamp("us", tz="UTC")),
            "base_value": pa.array([BASE_VALUE] * n if explained else [None] * n, pa.float64()),
            "contributions": pa.array([c for c, _ in explained] or [None] * n, pa.list_(pa.float32())),
            "reasons": pa.array([r for _, r in explained] or [None] * n, pa.list_(REASON)),
        }
    )


# Each version's reference set: two rows whose contributions give v1 amount 0.5 / colour 0.2 and v2 amount
# 0.3 / colour 0.4 as mean |contribution|.
REFERENCE_CONTRIBUTIONS = {"v1": [[0.6, -0.1], [-0.4, 0.3]], "v2": [[0.2, 0.4], [-0.4, -0.4]]}


def add_reference(store: Warehouse) -> None:
    for version, contributions in REFERENCE_CONTRIBUTIONS.items():
        rows = [
            {"model_version": version, "record_id": f"ref{i}", "split": "train", "target": "no", "amount": 1.0,
             "colour": "red", "embedding": [0.0, 0.0], "score": 0.1, "contributions": c}
            for i, c in enumerate(contributions)
        ]  # fmt: skip
        schema = pa.schema([f for f in store.table("reference").schema if f.name != "batch_id"])
        table = pa.Table.from_pylist(rows, schema)
        store.commit("reference", f"ref-{version}", table, partition=version)


def quarantine_table() -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "record_id": "b4",
                "source_file": "f2.csv",
                "row_number": 4,
                "column_name": "amount",
                "rule": "min",
                "value": "'-1'",
                "reason": "amount: below the minimum 0 (got '-1')",
                "raw": "{}",
                "quarantined_at": DAY2,
            },
            {
                "record_id": "b5",
                "source_file": "f2.csv",
                "row_number": 5,
                "column_name": "colour",
                "rule": "allowed",
                "value": "'pink'",
                "reason": "colour: not one of the allowed values (got 'pink')",
                "raw": "{}",
                "quarantined_at": DAY2,
            },
        ]
    )


def feedback_table() -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "record_id": record_id,
                "label": label,
                "labelled_at": labelled_at,
                "source_file": f"labels-{received_at:%d}.csv",
                "row_number": 1,
                "received_at": received_at,
            }
            for record_id, label, labelled_at, received_at in LABELS
        ]
    )


def model_event(version: str, event: str, at: datetime, reason: str, roc_auc: float | None) -> dict[str, Any]:
    return {
        "model_version": version,
        "event": event,
        "event_at": at,
        "reason": reason,
        "actor": "test",
        "roc_auc": roc_auc,
        "f1": None if roc_auc is None else roc_auc - 0.5,
        "precision": None,
        "recall": None,
        "balanced_accuracy": None if roc_auc is None else roc_auc - 0.1,
        "metrics_json": "{}",
        "model_input": "features",
        "embedding_size": 2,
        "threshold": THRESHOLD,
        "train_rows": 100,
        "holdout_rows": 25,
        "data_from": "s0000",
        "data_to": "s0099",
        "fingerprint": version,
        "artifact_dir": f"/models/{version}",
        "artifact_sha256": "{}",
        "flow_run_id": RUN_RETRAIN if version == "v2" else None,
    }


def _without_filled(schema: pa.Schema) -> pa.Schema:
    """The table's schema without the partition and batch columns, which the store fills in."""
    return pa.schema([f for f in schema if f.name not in ("batch_id", "event_on", "monitored_on")])


def decision(champion: str, champion_value: float, challenger_value: float, low: float, high: float) -> dict[str, Any]:
    """A promotion test's numbers, as `retrain` stores them on the decision row."""
    test = {"metric": "roc_auc", "champion": champion_value, "challenger": challenger_value}
    return {
        "metrics_json": json.dumps({"comparison": {"test": test, "champion": {"version": champion}}}),
        "decision_metric": "roc_auc",
        "decision_gain": challenger_value - champion_value,
        "decision_low": low,
        "decision_high": high,
        "decision_p_value": 0.01 if low > 0 else 0.6,
        "decision_rows": 200,
        "decision_positives": 40,
    }


def models_table() -> pa.Table:
    """v3 looks best on its own hold-out (0.85) but lost to v2 on the rows both were scored on."""
    v1, v2, v3 = DAY1 - timedelta(hours=1), DAY3 - timedelta(hours=1), DAY3 + timedelta(hours=1)
    return pa.Table.from_pylist(
        [
            model_event("v1", "trained", v1, "trained on the reference data", 0.70),
            model_event("v1", "promoted", v1, "first model: there was no champion", 0.70),
            model_event("v2", "trained", v2, "challenger to v1", 0.80),
            {
                **model_event("v2", "promoted", v2, "promoted: v2 beat v1", 0.80),
                **decision("v1", 0.71, 0.78, 0.02, 0.12),
            },
            model_event("v1", "retired", v2, "replaced by v2", None),
            model_event("v3", "trained", v3, "challenger to v2", 0.85),
            {
                **model_event("v3", "rejected", v3, "rejected: v3 lost to v2", 0.85),
                **decision("v2", 0.79, 0.77, -0.06, 0.02),
            },
        ],
        schema=_without_filled(MODELS),  # columns an event does not name (the decision's numbers) are null
    )


def metric(
    name: str,
    value: float,
    status: str = "info",
    threshold: float | None = None,
    column: str | None = None,
    p_value: float | None = None,
) -> dict[str, Any]:
    return {
        "metric": name,
        "value": value,
        "status": status,
        "threshold": threshold,
        "column_name": column,
        "p_value": p_value,
        "p_value_threshold": None if p_value is None else 0.05,
    }


def monitoring_table(
    report_id: str, version: str, at: datetime, path: Path, metrics: list[dict[str, Any]], run: str | None = None
) -> pa.Table:
    common = {
        "flow_run_id": run,
        "report_id": report_id,
        "run_at": at,
        "window_start": at - timedelta(days=3),
        "window_end": at,
        "model_version": version,
        "sample_size": 3,
        "sampled": False,
        "detail": f"what {report_id} measured",
        "report_path": str(path),
    }
    return pa.Table.from_pylist([{**common, **m} for m in metrics], schema=_without_filled(MONITORING))


FIRST_REPORT = [
    metric("drift_share_features", 0.0, "ok", 0.5),
    metric("drift_share_embedding", 0.0, "ok", 0.5),
    metric("prediction_drift", 0.05, "ok", 0.1, "score", p_value=0.71),
    metric("roc_auc", float("nan")),
    metric("estimated_roc_auc", 0.70),
    metric("retrain_due", 0.0),
]
SECOND_REPORT = [
    metric("drift_share_features", 0.75, "alert", 0.5),
    metric("drift_share_embedding", 0.25, "ok", 0.5),
    metric("column_drift", 0.40, "alert", 0.1, "amount", p_value=0.0001),
    metric("column_drift", 0.01, "ok", 0.1, "colour", p_value=0.4),
    metric("prediction_drift", 0.30, "alert", 0.1, "score", p_value=0.001),
    metric("cbpe_gap_roc_auc", 0.09, "alert", 0.05),  # a flag on the estimate, not an alert
    metric("roc_auc", 0.80),
    metric("f1", 0.40),
    metric("balanced_accuracy", 0.70),
    metric("estimated_roc_auc", 0.78),
    metric("estimated_roc_auc_labelled", 0.79),
    metric("retrain_due", 1.0),
]


def empty_warehouse(root: Path) -> Warehouse:
    """The warehouse as `scorehouse init` leaves it: folders, schema files and the catalog, no rows."""
    store = open_warehouse(root, FEATURES, event_time=False)
    store.init()
    build_catalog(store)
    return store


def add_records_and_predictions(store: Warehouse) -> None:
    for batch, ids, day in (("r1", ["a1", "a2", "a3"], DAY1), ("r2", ["b1", "b2", "b3"], DAY2)):
        store.commit(
            "records",
            batch,
            records_table(ids),
            partition=day.date().isoformat(),
            read_version=store.version("records"),
        )
    store.commit("quarantine", "q2", quarantine_table(), partition=DAY2.date().isoformat())
    for (version, at), scores in SCORES.items():
        store.commit("predictions", f"{version}-{at:%d}", predictions_table(version, at, scores), partition=f"{at:%F}")
    store.commit("models", "m", models_table(), partition=DAY1.date().isoformat())
    add_reference(store)
    refresh_current(store)


def add_labels(store: Warehouse) -> None:
    store.commit("feedback", "f", feedback_table(), partition=DAY3.date().isoformat())


def add_reports(store: Warehouse, reports: Path) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "r2.html").write_text("<html><body><h1>Evidently report r2</h1></body></html>", encoding="utf-8")
    gone = reports / "r1.html"  # never written: the dashboard must say the file is gone
    store.commit("monitoring", "r1", monitoring_table("r1", "v1", DAY2, gone, FIRST_REPORT), partition=f"{DAY2:%F}")
    second = monitoring_table("r2", "v2", DAY3, reports / "r2.html", SECOND_REPORT, run=RUN_MONITOR)
    store.commit("monitoring", "r2", second, partition=f"{DAY3:%F}")
    store.commit("alert_episodes", "e", episodes_table(), partition=f"{DAY3:%F}")


def episodes_table() -> pa.Table:
    """The second report opened two episodes (drift, prediction drift); drift retrained once."""
    common = {"model_version": "v2", "report_id": "r2", "window_start": DAY3 - timedelta(days=3), "window_end": DAY3}
    rows = [
        {**common, "episode_id": "e1", "alert": "drift", "event": "opened", "event_at": DAY3, "detail": "drift"},
        {**common, "episode_id": "e1", "alert": "drift", "event": "retrain", "event_at": DAY3, "detail": "retrain"},
        {**common, "episode_id": "e2", "alert": "prediction_drift", "event": "opened", "event_at": DAY3, "detail": "p"},
    ]
    return pa.Table.from_pylist(rows, schema=_without_filled(ALERT_EPISODES))


def tiny_warehouse(folder: Path, *, labels: bool = True, reports: bool = True) -> Tiny:
    """The tiny warehouse under `folder`/warehouse, with or without its labels and reports."""
    store = empty_warehouse(folder / "warehouse")
    add_records_and_predictions(store)
    if labels:
        add_labels(store)
    if reports:
        add_reports(store, folder / "reports")
    return Tiny(store=store, catalog=build_catalog(store), reports=folder / "reports")


# Values a person could put into the warehouse (an id in a file, a file's name, a label, a promotion reason)
# that would render links, images or formatting if the dashboard passed them to markdown unescaped.
EVIL = "https://evil.example"
HOSTILE_ID = f"x` [click]({EVIL}/phish) ![img]({EVIL}/pixel.png) <img src={EVIL}/h.png> :red[alarm] $x^2$"
HOSTILE_FILE = f"f](({EVIL}))[a]({EVIL}) `` ![i]({EVIL}/i.png).csv"


def hostile_warehouse(folder: Path) -> Path:
    """A warehouse whose record id, file name and model reasons are markdown that would link out; its catalog."""
    store = empty_warehouse(folder / "warehouse")
    records = records_table(["a1"])
    records = records.set_column(0, "record_id", pa.array([HOSTILE_ID]))
    records = records.set_column(records.schema.get_field_index("source_file"), "source_file", pa.array([HOSTILE_FILE]))
    store.commit("records", "r1", records, partition="2026-01-01", read_version=store.version("records"))
    store.commit("predictions", "p1", predictions_table("v1", DAY1, {HOSTILE_ID: 0.5}), partition="2026-01-01")
    refresh_current(store)
    models = models_table().to_pylist()
    for row in models:
        row["reason"] = f"[promoted]({EVIL}) ![x]({EVIL}/x.png)"
    store.commit("models", "m", pa.Table.from_pylist(models, models_table().schema), partition="2026-01-01")
    return build_catalog(store)
