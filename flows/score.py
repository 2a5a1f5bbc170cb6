"""`score`: every record without a prediction from the champion is embedded and scored, chunk by chunk."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.deployed import add_to_run_name
from flows.runtime import load_champion, open_store, publish, run_name, settings_from, utc_now
from flows.unit_work import chunk_batch_id, explainer_for, predictions_table
from pipeline.explain import Explainer
from pipeline.model import ScoringModel
from warehouse import scoring
from warehouse.scoring import Unit
from warehouse.store import Conflict, Warehouse, batch_id


@dataclass(frozen=True)
class ScoreReport:
    model_version: str
    scored: int
    chunks: int
    positives: int


@task(cache_policy=NO_CACHE, task_run_name="score unit {number}")
def score_unit(
    store: Warehouse, model: ScoringModel, unit: Unit, scored_at: datetime, number: int, explainer: Explainer | None
) -> pa.Table:
    """Embed, score (and explain) one unit: its `predictions` rows, not committed yet."""
    if not unit.rows.num_rows:  # nothing new: the commit only records the watermark
        return store.table("predictions").schema.empty_table()
    return predictions_table(model, unit.rows, scored_at, explainer)


@task(cache_policy=NO_CACHE, task_run_name="commit unit {number}")
def commit_unit(
    store: Warehouse, model: ScoringModel, unit: Unit, table: pa.Table, scored_at: datetime, number: int, base: int
) -> tuple[int, int]:
    """Commit one scored unit as one atomic batch that advances the watermark, from the snapshot of
    `predictions` the previous unit created (the first: the one the work was planned at, `base`); returns
    how many positives it predicted and the version it created. A run that committed for this model since
    `base` makes this raise `Conflict`."""
    landed = store.commit(
        "predictions",
        batch_id(chunk_batch_id(model.version, unit.rows.column("record_id")), unit.watermark),
        table,
        partition=scored_at.date().isoformat(),
        marks=[(scoring.watermark_app(model.version), unit.watermark)],
        read_version=base,
    )
    if not landed:  # another run committed this very unit: plan again from what it left
        raise Conflict(f"unit {number} of {model.version} was committed by another run")
    positives = int(np.sum(table.column("label").to_numpy(zero_copy_only=False) == model.classes[1]))
    return positives, store.committed_version("predictions")


def score_here(
    store: Warehouse, model: ScoringModel, chunk_rows: int, explainer: Explainer | None
) -> tuple[int, int, int]:
    """The local engine: plan the units and score them one after another in this process; returns the
    rows scored, the units committed and the positives predicted.

    Each unit's commit is made before the next unit is scored. A run that loses a race waits until the
    winner has stopped committing (`scoring.wait_until_quiet`), then plans what is left.
    """
    logger = get_run_logger()
    scored = chunks = positives = 0
    slowest = 0.0  # the longest a unit took here: about how often a concurrent run commits
    for _ in range(scoring.PLAN_ATTEMPTS):
        try:
            # Each unit is committed from the snapshot the previous one created (the first from the one the
            # plan was read at): a run that scored with this model in between makes the commit conflict.
            base = store.version("predictions")
            for unit in scoring.pending_units(store, model.version, model.feature_names, chunk_rows):
                chunks += 1
                scored_at, started = utc_now(), time.monotonic()
                table = score_unit(store, model, unit, scored_at, chunks, explainer)
                found, base = commit_unit(store, model, unit, table, scored_at, chunks, base)
                slowest = max(slowest, time.monotonic() - started)
                positives += found
                scored += unit.rows.num_rows
            return scored, chunks, positives
        except Conflict:
            logger.info(
                "another run scored with %s at the same time; planning again from its watermark once it is done",
                model.version,
            )
            scoring.wait_until_quiet(store, max(scoring.QUIET_SECONDS, 3 * slowest))
    raise RuntimeError(f"scoring with {model.version} lost {scoring.PLAN_ATTEMPTS} races with other runs; run again")


@task(cache_policy=NO_CACHE)
def refresh_current(store: Warehouse, champion: str) -> int:
    """Bring `predictions_current` up to date with the new rows of `predictions`; returns how many."""
    return scoring.refresh_current(store, champion)


@flow(name="score", flow_run_name=run_name("score"))
def score(config: str | None = None) -> ScoreReport:
    """Score every record the champion has not scored yet, in units of about `scoring.chunk_rows` rows.

    Work is found by a watermark, not by comparing all records with all predictions: each unit's commit
    records the `records` version the champion has scored up to (warehouse/scoring.py). Memory is bounded
    by the unit size; a killed run leaves whole units only and the next run goes on from the watermark;
    a run racing another one for the same model loses in the log and plans again from the new watermark.
    """
    logger = get_run_logger()
    settings = settings_from(config)
    store = open_store(settings)
    model = load_champion(store, settings)
    if settings.compute.engine == "dask":
        from flows.engine import score_on_cluster  # imports distributed only when a cluster is asked for

        outcome = score_on_cluster(store, settings, model, utc_now())
        scored, chunks, positives = outcome.scored, len(outcome.units), outcome.positives
    else:
        explainer = explainer_for(model, settings.explain)
        scored, chunks, positives = score_here(store, model, settings.scoring.chunk_rows, explainer)
    refresh_current(store, model.version)
    publish(store)
    report = ScoreReport(model_version=model.version, scored=scored, chunks=chunks, positives=positives)
    logger.info(
        "scored %d records with %s in %d unit(s); %d predicted %s",
        scored,
        model.version,
        chunks,
        positives,
        model.classes[1],
    )
    create_markdown_artifact(
        key="score-summary",
        markdown=f"# Score\n\n{scored} records scored by **{model.version}** in {chunks} unit(s); "
        f"{positives} predicted `{model.classes[1]}` at threshold {model.threshold}.",
        description=f"score {model.version}",
    )
    add_to_run_name(model.version)
    return report
