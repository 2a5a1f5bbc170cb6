"""`train`: fit the first champion on the reference data and store the reference set."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib.metadata import version as package_version

import pandas as pd
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.runtime import open_store, run_name, settings_from, utc_now
from pipeline.artifacts import save_version, sha256_of
from pipeline.config import Settings
from pipeline.metrics import METRICS
from pipeline.training import (
    TrainingResult,
    reference_set,
    reference_slice,
    train_and_evaluate,
)
from pipeline.validate import read_incoming, validate_rows
from warehouse.registry import champion, next_version, version_with_fingerprint
from warehouse.store import Warehouse, batch_id

LIBRARIES = ("scikit-learn", "xgboost-cpu", "pandas", "numpy", "pyarrow", "duckdb")


@task(cache_policy=NO_CACHE)
def load_reference(settings: Settings) -> pd.DataFrame:
    """The leading slice of the reference file that passes the contract, with its target."""
    logger = get_run_logger()
    dataset = settings.dataset
    raw = read_incoming(settings.reference_path)
    if dataset.target_column not in raw.columns:
        raise ValueError(f"reference file {settings.reference_path} has no target column {dataset.target_column!r}")
    checked = validate_rows(raw, dataset)
    if len(checked.bad):
        logger.warning(
            "%d reference rows break the contract and are left out of training; first: %s",
            len(checked.bad),
            checked.bad["reason"].iloc[0],
        )
    reference = checked.good.assign(
        **{dataset.target_column: raw[dataset.target_column].to_numpy()[checked.good["row_number"] - 1]}
    )
    return reference_slice(reference, settings.training.reference_fraction, dataset)


def fingerprint(settings: Settings) -> str:
    """What a version is trained from: the reference file's bytes and every setting that shapes the model."""
    parts = [
        sha256_of(settings.reference_path),
        settings.dataset.model_dump_json(),
        settings.training.model_dump_json(exclude={"reference_path"}),
        settings.model.model_dump_json(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


@task(cache_policy=NO_CACHE)
def fit(reference: pd.DataFrame, settings: Settings, version: str) -> TrainingResult:
    return train_and_evaluate(reference, settings, version=version)


@task(cache_policy=NO_CACHE)
def register(store: Warehouse, settings: Settings, result: TrainingResult, fingerprint_: str) -> bool:
    """Write the version's files, its reference set and its registry rows; promote it if there is no champion."""
    version = result.model.version
    folder = settings.models_dir / version
    metadata = {
        "metrics": result.metrics,
        "baselines": result.baselines,
        "fingerprint": fingerprint_,
        "reference_file": str(settings.reference_path),
        "train_rows": len(result.train),
        "holdout_rows": len(result.holdout),
        "libraries": {name: package_version(name) for name in LIBRARIES} | {"python": platform.python_version()},
    }
    hashes = save_version(result.model, folder, metadata)
    dataset = settings.dataset
    reference = pa.Table.from_pandas(reference_set(result, dataset).assign(model_version=version), preserve_index=False)
    store.commit("reference", batch_id("reference", version, fingerprint_), reference, partition=version)

    with store.connect() as con:
        promote = champion(con) is None
    now = utc_now()
    ids = pd.concat([result.train["record_id"], result.holdout["record_id"]])
    row = {
        "model_version": version,
        "event_at": now,
        "actor": "train",
        **{name: result.metrics[name] for name in METRICS},
        "metrics_json": json.dumps({"holdout": result.metrics, "other_inputs": result.baselines}),
        "model_input": result.model.model_input,
        "embedding_size": settings.model.embedding_size,
        "threshold": result.model.threshold,
        "train_rows": len(result.train),
        "holdout_rows": len(result.holdout),
        "data_from": ids.min(),
        "data_to": ids.max(),
        "fingerprint": fingerprint_,
        "artifact_dir": str(folder),
        "artifact_sha256": json.dumps(hashes, sort_keys=True),
    }
    events = [{**row, "event": "trained", "reason": "trained on the reference data"}]
    if promote:
        events.append({**row, "event": "promoted", "reason": "first model: no champion yet"})
    store.commit(
        "models", batch_id("models", version, "trained"), pa.Table.from_pylist(events), partition=now.date().isoformat()
    )
    return promote


def _summary(result: TrainingResult, promoted: bool) -> str:
    lines = [
        f"# Trained {result.model.version}",
        f"{len(result.train)} training rows, {len(result.holdout)} held out. "
        f"{'Promoted to champion.' if promoted else 'Not promoted: a champion exists.'}",
        "",
        "| input | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
        f"| **{result.model.model_input}** (used) | " + " | ".join(f"{result.metrics[m]:.3f}" for m in METRICS) + " |",
    ]
    for name, metrics in result.baselines.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[m]:.3f}" for m in METRICS) + " |")
    return "\n".join(lines)


@flow(name="train", flow_run_name=run_name("train"))
def train(config: str | None = None) -> str:
    """Fit the embedding and the classifier on the reference data; register the version.

    Idempotent: a version trained from the same data and settings is not trained again.
    """
    logger = get_run_logger()
    settings = settings_from(config)
    store = open_store(settings)
    print_ = fingerprint(settings)
    with store.connect() as con:
        existing = version_with_fingerprint(con, print_)
        version = next_version(con)
    if existing:
        logger.info("%s was already trained from this data and these settings; nothing to do", existing)
        return existing
    reference = load_reference(settings)
    result = fit(reference, settings, version)
    promoted = register(store, settings, result, print_)
    logger.info(
        "trained %s on %d rows: hold-out ROC AUC %.3f (%s)%s",
        version,
        len(result.train),
        result.metrics["roc_auc"],
        result.model.model_input,
        ", promoted to champion" if promoted else "",
    )
    create_markdown_artifact(key="train-summary", markdown=_summary(result, promoted), description=f"train {version}")
    return version
