"""`score`: every record without a prediction from the champion is embedded and scored, chunk by chunk."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.deployed import add_to_run_name
from flows.runtime import load_champion, open_store, run_name, settings_from, utc_now
from pipeline.model import ScoringModel
from warehouse.store import Warehouse, batch_id, repeat

PENDING_SQL = """
    SELECT r.* FROM records r
    ANTI JOIN (SELECT record_id FROM predictions WHERE model_version = $version) p USING (record_id)
"""


@dataclass(frozen=True)
class ScoreReport:
    model_version: str
    scored: int
    chunks: int
    positives: int


def predictions_table(model: ScoringModel, chunk: pa.RecordBatch, scored_at: object) -> pa.Table:
    """Score one chunk of records and shape it as `predictions` rows."""
    frame = chunk.select(["record_id", *model.feature_names]).to_pandas()
    scores, labels, vectors = model.score(frame)
    n = len(frame)
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
        }
    )


def chunk_batch_id(model_version: str, ids: pa.Array) -> str:
    """The same records scored by the same version give the same batch: a repeat commit is a no-op."""
    hashes = pd.util.hash_array(ids.to_numpy(zero_copy_only=False).astype(object))
    digest = hashlib.sha256(hashes.tobytes()).hexdigest()
    return batch_id("score", model_version, digest)


@task(cache_policy=NO_CACHE, task_run_name="score chunk {number}")
def score_chunk(store: Warehouse, model: ScoringModel, chunk: pa.RecordBatch, number: int) -> int:
    """Embed, score and commit one chunk as one atomic batch; returns how many positives it predicted."""
    now = utc_now()
    table = predictions_table(model, chunk, now)
    store.commit(
        "predictions", chunk_batch_id(model.version, chunk.column("record_id")), table, partition=now.date().isoformat()
    )
    return int(np.sum(table.column("label").to_numpy(zero_copy_only=False) == model.classes[1]))


@flow(name="score", flow_run_name=run_name("score"))
def score(config: str | None = None) -> ScoreReport:
    """Score every record the champion has not scored yet, in chunks of `scoring.chunk_rows` rows.

    Memory is bounded by the chunk size: records stream from DuckDB and each chunk is committed
    before the next is read. A killed run leaves whole chunks only; the next run scores the rest.
    """
    logger = get_run_logger()
    settings = settings_from(config)
    store = open_store(settings)
    model = load_champion(store)
    scored = chunks = positives = 0
    with store.connect() as con:
        reader = con.sql(PENDING_SQL, params={"version": model.version}).to_arrow_reader(settings.scoring.chunk_rows)
        for chunk in _rebatched(reader, settings.scoring.chunk_rows):
            chunks += 1
            positives += score_chunk(store, model, chunk, chunks)
            scored += chunk.num_rows
    report = ScoreReport(model_version=model.version, scored=scored, chunks=chunks, positives=positives)
    logger.info(
        "scored %d records with %s in %d chunk(s); %d predicted %s",
        scored,
        model.version,
        chunks,
        positives,
        model.classes[1],
    )
    create_markdown_artifact(
        key="score-summary",
        markdown=f"# Score\n\n{scored} records scored by **{model.version}** in {chunks} chunk(s); "
        f"{positives} predicted `{model.classes[1]}` at threshold {model.threshold}.",
        description=f"score {model.version}",
    )
    add_to_run_name(model.version)
    return report


def _rebatched(reader: pa.RecordBatchReader, size: int):  # type: ignore[no-untyped-def]
    """Batches of exactly `size` rows (the last may be smaller), whatever sizes the reader yields."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        pending.append(batch)
        count += batch.num_rows
        while count >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size).combine_chunks().to_batches()[0]
            rest = table.slice(size)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
