"""`train`: fit the first champion on the reference data and store the reference set."""

from __future__ import annotations

import hashlib

import pandas as pd
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.deployed import add_to_run_name
from flows.registry import Event, register_version, withdraw_version
from flows.runtime import open_store, publish, run_name, settings_from
from pipeline.artifacts import claim_version, sha256_of
from pipeline.config import Settings
from pipeline.metrics import METRICS
from pipeline.training import (
    TrainingResult,
    reference_slice,
    train_and_evaluate,
)
from pipeline.validate import read_incoming, validate_rows
from warehouse.registry import champion, highest_version, version_with_fingerprint
from warehouse.store import Conflict, Warehouse


@task(cache_policy=NO_CACHE)
def load_reference(settings: Settings) -> pd.DataFrame:
    """The leading slice of the reference file that passes the contract, with its target."""
    logger = get_run_logger()
    dataset = settings.dataset
    raw = read_incoming(settings.reference_path)
    if dataset.target_column not in raw.column_names:
        raise ValueError(f"reference file {settings.reference_path} has no target column {dataset.target_column!r}")
    checked = validate_rows(raw, dataset)
    if len(checked.bad):
        logger.warning(
            "%d reference rows break the contract and are left out of training; first: %s",
            len(checked.bad),
            checked.bad["reason"].iloc[0],
        )
    rows = checked.good.column("row_number").to_numpy() - 1
    target = raw.column(dataset.target_column).take(pa.array(rows)).to_pandas()
    reference = checked.good.to_pandas().assign(**{dataset.target_column: target.to_numpy()})
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
def register(store: Warehouse, settings: Settings, result: TrainingResult, fingerprint_: str, decided_at: int) -> bool:
    """Write the version and its registry rows; it becomes champion if there was none at `decided_at` (the
    registry's version this training was decided on: a registration since then makes the commit conflict)."""
    with store.connect(version={"models": decided_at}) as con:
        promote = champion(con) is None
    version = result.model.version
    events = [Event(version, "trained", "trained on the reference data")]
    if promote:
        events.append(Event(version, "promoted", "first model: there was no champion"))
    register_version(
        store,
        settings,
        result.model,
        train=result.train,
        holdout=result.holdout,
        metrics=result.metrics,
        details={"other_inputs": result.baselines, "reference_file": str(settings.reference_path)},
        fingerprint=fingerprint_,
        events=events,
        actor="train",
        decided_at=decided_at,
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
    decided_at = store.version("models")
    with store.connect(version={"models": decided_at}) as con:
        existing = version_with_fingerprint(con, print_)
        first = highest_version(con) + 1
    if existing:
        logger.info("%s was already trained from this data and these settings; nothing to do", existing)
        add_to_run_name(f"{existing} (already trained)")
        return existing
    version = claim_version(settings.models_dir, first, print_)
    reference = load_reference(settings)
    result = fit(reference, settings, version)
    try:
        promoted = register(store, settings, result, print_, decided_at)
    except Conflict:
        # Another training registered meanwhile: of the same data (then its version stands and this one's
        # files go), or another first champion (then this version is registered without the promotion).
        decided_at = store.version("models")
        with store.connect(version={"models": decided_at}) as con:
            existing = version_with_fingerprint(con, print_)
        if existing:
            withdraw_version(store, settings, version, print_)
            logger.info("%s was trained from this data by a concurrent run; %s is left unused", existing, version)
            add_to_run_name(f"{existing} (trained concurrently)")
            return existing
        promoted = register(store, settings, result, print_, decided_at)
    publish(store)
    logger.info(
        "trained %s on %d rows: hold-out ROC AUC %.3f (%s)%s",
        version,
        len(result.train),
        result.metrics["roc_auc"],
        result.model.model_input,
        ", promoted to champion" if promoted else "",
    )
    create_markdown_artifact(key="train-summary", markdown=_summary(result, promoted), description=f"train {version}")
    add_to_run_name(f"{version}{' champion' if promoted else ''}")
    return version
