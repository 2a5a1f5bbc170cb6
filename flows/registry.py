"""Writing model versions: their files, their training rows and their rows in `models`, committed in that order.

A version's training rows are its reference set (`reference`: every row embedded, scored and explained,
what monitoring compares against), except for a rejected challenger: it trained on its champion's whole
reference set plus labelled production rows, so it stores only those rows' ids, splits and labels
(`challenger_rows`); its reference set is built from them if it is ever promoted by hand.

The `models` batch goes last and holds every event of the decision (trained, promoted or rejected,
retired), so a registry reader sees a decision whole or not at all. A run killed before it leaves
files nobody refers to, under a version number nobody else will take (`claim_version`).

The `models` commit also claims, in the log, what must happen once only: its version number, its
training fingerprint, and (when it promotes) the champion. Two runs racing for any of these conflict:
one lands, the other gets `Conflict` and decides again on what the winner wrote.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from flows.runtime import this_flow_run_id, utc_now
from pipeline.artifacts import release_version, save_version
from pipeline.config import Settings
from pipeline.metrics import METRICS
from pipeline.model import ScoringModel
from pipeline.training import reference_set
from warehouse.layout import FLOW_RUN_ID
from warehouse.registry import reference_batch
from warehouse.store import Warehouse, batch_id

LIBRARIES = ("scikit-learn", "xgboost-cpu", "pandas", "numpy", "pyarrow", "duckdb")


@dataclass(frozen=True)
class ChallengerRows:
    """A challenger's own training and comparison rows (`pipeline.retraining.own_rows`) and the champion
    whose whole reference set it trained on as well."""

    champion_version: str
    rows: pd.DataFrame  # record_id, split, target


@dataclass(frozen=True)
class Event:
    """One row of the registry: `event` happened to `version` because of `reason`."""

    version: str
    event: str  # trained | promoted | rejected | retired
    reason: str


def register_version(
    store: Warehouse,
    settings: Settings,
    model: ScoringModel,
    *,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    metrics: dict[str, float],
    details: dict[str, Any],
    fingerprint: str,
    events: list[Event],
    actor: str,
    decision: dict[str, Any] | None = None,
    decided_at: int | None = None,
    challenger: ChallengerRows | None = None,
) -> None:
    """Save `model`'s files, its training rows, then every event in one `models` batch.

    The training rows are its reference set, unless `challenger` is given and the events do not promote
    it: a rejected challenger stores only its own rows (`store_training_rows`). `decision` (the promotion
    test's numbers) goes on the version's promoted or rejected row. `decided_at` is the version of
    `models` the decision was made at (which champion there was): a promotion committed since makes this
    commit conflict instead of landing over it.
    """
    version = model.version
    reference = reference_set(model, train, holdout, settings.dataset)
    # The Models page's global importance, kept in the registry: a rejected challenger has no reference set.
    details = {**details, "importance": importance(reference)}
    metadata = {
        "metrics": metrics,
        **details,
        "fingerprint": fingerprint,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "libraries": {name: package_version(name) for name in LIBRARIES} | {"python": platform.python_version()},
    }
    hashes = save_version(model, settings.models_dir / version, metadata)
    labelled = pd.concat([train, holdout]).get("labelled_at")
    promoted = any(e.version == version and e.event == "promoted" for e in events)
    store_training_rows(store, version, fingerprint, reference, None if promoted else challenger)
    now = utc_now()
    trained = {
        "model_version": version,
        "event_at": now,
        "actor": actor,
        **{name: metrics[name] for name in METRICS},
        "metrics_json": json.dumps({"holdout": metrics, **details}, default=float),
        "model_input": model.model_input,
        "embedding_size": settings.model.embedding_size,
        "threshold": model.threshold,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        # The labels' time range (none for the reference file). Never record ids: they would survive erasure.
        "data_from": None if labelled is None or labelled.isna().all() else str(labelled.min()),
        "data_to": None if labelled is None or labelled.isna().all() else str(labelled.max()),
        "fingerprint": fingerprint,
        "artifact_dir": version,  # relative to the models root: a moved project still finds it
        "artifact_sha256": json.dumps(hashes, sort_keys=True),
    }
    rows = [
        {
            **(trained if e.version == version else {"model_version": e.version, "event_at": now, "actor": actor}),
            **((decision or {}) if e.version == version and e.event in ("promoted", "rejected") else {}),
            "event": e.event,
            "reason": e.reason,
        }
        for e in events
    ]
    commit_events(
        store,
        rows,
        batch_id("models", version, fingerprint),
        claims=[f"version/{version}", f"fingerprint/{fingerprint}"],
        read_version=decided_at,
    )


def importance(reference: pd.DataFrame) -> list[float]:
    """The global importance of a version: the mean |contribution| of each feature over its reference set."""
    return [float(v) for v in np.abs(np.stack(reference["contributions"].to_list()).astype(np.float64)).mean(axis=0)]


def store_training_rows(
    store: Warehouse, version: str, fingerprint: str, reference: pd.DataFrame, challenger: ChallengerRows | None
) -> None:
    """Commit a version's reference set, or (a challenger not promoted) only its own rows. Either is one batch
    named after the version and its fingerprint: a run again writes nothing twice."""
    batch = reference_batch(version, fingerprint)
    if challenger is None:
        commit_reference_set(store, version, batch, reference)
        return
    own = challenger.rows.assign(model_version=version, champion_version=challenger.champion_version)
    store.commit("challenger_rows", batch, pa.Table.from_pandas(own, preserve_index=False), partition=version)


def commit_reference_set(store: Warehouse, version: str, batch: str, reference: pd.DataFrame) -> None:
    rows = pa.Table.from_pandas(reference.assign(model_version=version), preserve_index=False)
    store.commit("reference", batch, rows, partition=version)


CHAMPION_CLAIM = "champion"


def commit_events(
    store: Warehouse,
    rows: list[dict[str, Any]],
    batch: str,
    claims: list[str] | None = None,
    read_version: int | None = None,
) -> bool:
    """Append registry rows as one batch; columns a row does not name are null. A batch that promotes
    claims the champion: a promotion committed since `read_version` (or at the same moment) makes it
    conflict (`Conflict`) instead of both landing. Each row names the flow run that wrote it (none outside one)."""
    schema = store.table("models").schema
    run = this_flow_run_id()
    filled = [{name: row.get(name) for name in schema.names} | {FLOW_RUN_ID: row.get(FLOW_RUN_ID, run)} for row in rows]
    day = rows[0]["event_at"].date().isoformat()
    marks = [(claim, 0) for claim in claims or []]
    if any(row.get("event") == "promoted" for row in rows):
        marks.append((CHAMPION_CLAIM, 0))
    table = pa.Table.from_pylist(filled, schema=schema)
    return store.commit("models", batch, table, partition=day, marks=marks, read_version=read_version)


def withdraw_version(store: Warehouse, settings: Settings, version: str, fingerprint: str) -> None:
    """Undo what an unregistered version wrote after a concurrent run registered the same work: its model
    files and its training rows (the claim file stays, so the number is never given out again)."""
    release_version(settings.models_dir, version)
    for table in ("reference", "challenger_rows"):
        drop_training_rows(store, table, version, fingerprint)


def drop_training_rows(store: Warehouse, table: str, version: str, fingerprint: str) -> None:
    """Delete a version's batch of training rows from `table` (`reference` or `challenger_rows`)."""
    if store.has_batch(table, reference_batch(version, fingerprint)):
        store.erase(table, "batch_id", [reference_batch(version, fingerprint)])
