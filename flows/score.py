"""`score`: every record without a prediction from the champion is embedded and scored, chunk by chunk."""

from __future__ import annotations

import hashlib
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
from pipeline.config import Explain
from pipeline.explain import Explainer, no_explanations, to_arrow
from pipeline.model import ScoringModel
from warehouse import scoring
from warehouse.layout import BACKFILL_COLUMN
from warehouse.scoring import Unit
from warehouse.store import Conflict, Warehouse, batch_id, repeat


@dataclass(frozen=True)
class ScoreReport:
    model_version: str
    scored: int
    chunks: int
    positives: int


def predictions_table(
    model: ScoringModel,
    chunk: pa.Table,
    scored_at: object,
    explainer: Explainer | None = None,
    *,
    backfill: bool = False,
) -> pa.Table:
    """Score one chunk of records and shape it as `predictions` rows, with their explanations when an
    explainer is given (null explanation columns otherwise); `backfill` marks a backfill's rows (the
    champion's leave the column null)."""
    frame = chunk.select(["record_id", *model.feature_names]).to_pandas()
    n = len(frame)
    if explainer is not None:
        scores, labels, vectors, explanations = explainer.score_and_explain(frame)
        explained = to_arrow(explanations)
    else:
        scores, labels, vectors = model.score(frame)
        explained = no_explanations(n)
    return pa.table(
        {
            "record_id": chunk.column("record_id"),
            "model_version": repeat(model.version, n, pa.string()),
            "score": pa.array(scores, pa.float64()),
            "label": pa.array(labels, pa.string()),
            "threshold": pa.array(np.full(n, model.threshold), pa.float64()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.ravel(), pa.float32()), vectors.shape[1]
            ).cast(pa.list_(pa.float32())),
            "scored_at": repeat(scored_at, n, pa.timestamp("us", tz="UTC")),
            **explained,
            **({BACKFILL_COLUMN: repeat(True, n, pa.bool_())} if backfill else {}),
        }
    )


def chunk_batch_id(model_version: str, ids: pa.Array | pa.ChunkedArray) -> str:
    """The same records scored by the same version give the same batch: a repeat commit is a no-op."""
    return batch_id("score", model_version, ids_digest(ids))


def ids_digest(ids: pa.Array | pa.ChunkedArray) -> str:
    """A sha256 of the ids in order, whatever their chunking: the lengths and the bytes, from Arrow's buffers
    (hashing them as Python objects cost a tenth of the score flow)."""
    lengths, data = hashlib.sha256(), hashlib.sha256()
    for chunk in ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]:
        text = chunk.cast(pa.large_string())
        offsets = np.frombuffer(text.buffers()[1], np.int64)[text.offset : text.offset + len(text) + 1]
        lengths.update(np.diff(offsets).astype("<i8").tobytes())
        data.update(memoryview(text.buffers()[2] or b"")[offsets[0] : offsets[-1]])
    return hashlib.sha256(lengths.digest() + data.digest()).hexdigest()


def backfill_batch_id(model_version: str, ids: pa.Array | pa.ChunkedArray) -> str:
    """A backfill's batch: the version and the records it scored (never the time of the run)."""
    return batch_id(chunk_batch_id(model_version, ids), "backfill")


def explainer_for(model: ScoringModel, settings: Explain) -> Explainer | None:
    """The champion's explainer, prepared once per run, or None when explanations are off."""
    if not settings.enabled:
        return None
    return Explainer.of(model, top_k=settings.top_k, approximate=settings.approximate)


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
