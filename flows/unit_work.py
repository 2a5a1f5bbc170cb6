"""One unit of scoring's work as a Dask worker runs it, and the rows the local engine scores too: a unit's
`predictions` rows, its batch id, and the worker's side of the Dask engine (flows/engine.py).

Nothing here imports Prefect: a worker process imports this module, and Prefect's import was 2 s of each
worker's start-up. The local engine and a backfill build their rows with the same functions, so both
engines write the same rows to the last bit.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake.transaction import AddAction

from flows.runtime import warehouse_of
from pipeline.artifacts import load_version
from pipeline.config import Explain, Settings
from pipeline.explain import Explainer, no_explanations, to_arrow
from pipeline.model import ScoringModel
from warehouse import units
from warehouse.backfill import BackfillPlan
from warehouse.layout import BACKFILL_COLUMN
from warehouse.store import batch_id, repeat
from warehouse.units import UnitRef


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


@dataclass(frozen=True)
class ScoreJob:
    """What every unit of one run shares: small, sent with each unit."""

    settings: Settings
    model_version: str
    model_folder: str  # the version's artifacts, at the same path on every worker
    sha256: tuple[tuple[str, str], ...]
    scored_at: datetime
    backfill: BackfillPlan | None = None  # a backfill's attempt (warehouse/backfill.py), or the version's scoring


@dataclass(frozen=True)
class UnitResult:
    """What a worker sends back: counts and the add action of the file it wrote, never rows."""

    number: int
    rows: int
    positives: int
    batch: str
    actions: list[AddAction]
    worker: str
    seconds: float


# ------------------------------------------------------------------------------------------ on a worker


@functools.lru_cache(maxsize=4)
def _model(folder: str, sha256: tuple[tuple[str, str], ...]) -> ScoringModel:
    """The model, loaded and checked once per worker process (a unit is seconds; loading is not free)."""
    return load_version(Path(folder), dict(sha256))


@functools.lru_cache(maxsize=4)
def _explainer(folder: str, sha256: tuple[tuple[str, str], ...], settings: Explain) -> Explainer | None:
    """The model's explainer, prepared once per worker process, as the local engine prepares it once per run."""
    return explainer_for(_model(folder, sha256), settings)


def run_unit(job: ScoreJob, unit: UnitRef) -> UnitResult:
    """Score one unit where it runs: read its rows, score them, write them as an uncommitted file."""
    started = time.perf_counter()
    store = warehouse_of(job.settings)
    model = _model(job.model_folder, job.sha256)
    rows = units.read_unit(store, unit, model.version, ["record_id", *model.feature_names])
    ids = rows.column("record_id")
    if job.backfill is not None:
        batch = backfill_batch_id(model.version, ids)
    else:
        batch = batch_id(chunk_batch_id(model.version, ids), unit.watermark)
    actions: list[AddAction] = []
    positives = 0
    if rows.num_rows:  # an empty unit commits no file: its commit only records the watermark
        explainer = _explainer(job.model_folder, job.sha256, job.settings.explain)
        table = predictions_table(model, rows, job.scored_at, explainer, backfill=job.backfill is not None)
        actions = store.write_files("predictions", batch, table, partition=job.scored_at.date().isoformat())
        positives = int(np.sum(table.column("label").to_numpy(zero_copy_only=False) == model.classes[1]))
    return UnitResult(
        number=unit.number,
        rows=rows.num_rows,
        positives=positives,
        batch=batch,
        actions=actions,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        seconds=time.perf_counter() - started,
    )
