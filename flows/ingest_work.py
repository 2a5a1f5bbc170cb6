"""One block of `ingest` as a Dask worker validates it, and the rows a block stores, which the flow builds with
the same functions: a block's `records` rows and its `quarantine` rows.

Nothing here imports Prefect (a worker process imports this module; see flows/unit_work.py).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake.transaction import AddAction

from flows.runtime import warehouse_of
from pipeline.config import Settings
from pipeline.validate import BAD_COLUMNS, parquet_block, validate_rows
from warehouse.layout import FLOW_RUN_ID
from warehouse.store import batch_id, repeat


def quarantine_table(bad: pd.DataFrame, name: str, now: pd.Timestamp, run_id: str | None) -> pa.Table:
    """A block's bad rows as `quarantine` rows of file `name`."""
    frame = bad[BAD_COLUMNS].assign(source_file=name, quarantined_at=now, **{FLOW_RUN_ID: run_id})
    frame["row_number"] = frame["row_number"].astype("Int64")
    return pa.Table.from_pandas(frame, preserve_index=False)


def records_table(good: pa.Table, name: str, now: pd.Timestamp, run_id: str | None) -> pa.Table:
    """A block's good rows as `records` rows of file `name`."""
    n = good.num_rows
    return (
        good.append_column("source_file", repeat(name, n, pa.string()))
        .append_column("ingested_at", repeat(now, n, pa.timestamp("us", tz="UTC")))
        .append_column(FLOW_RUN_ID, repeat(run_id, n, pa.string()))
    )


def reasons(bad: pd.DataFrame) -> dict[str, int]:
    """How many bad rows each column / rule has, most first."""
    counts = bad.groupby(["column_name", "rule"]).size().sort_values(ascending=False)
    return {f"{column} / {rule}": int(n) for (column, rule), n in zip(counts.index, counts.to_numpy(), strict=True)}


@dataclass(frozen=True)
class IngestJob:
    """What every block of one file shares: small, sent with each block."""

    settings: Settings
    path: str  # the incoming file, at the same path on every worker
    digest: str  # its content's sha256: the blocks' batch ids
    now: pd.Timestamp
    run_id: str | None  # the Prefect flow run, written with each row

    @property
    def name(self) -> str:
        return Path(self.path).name

    def batch(self, number: int) -> str:
        return batch_id("ingest", self.digest, number)


@dataclass(frozen=True)
class BlockResult:
    """What a worker sends back: counts, the bad rows' numbers, and the add actions of the two files it
    wrote (`records` and `quarantine`), never rows."""

    number: int
    rows_in: int
    bad_rows: np.ndarray  # the file row numbers of the block's bad rows
    reasons: dict[str, int]
    records: list[AddAction]
    quarantine: list[AddAction]
    worker: str
    seconds: float

    @property
    def stored(self) -> int:
        return self.rows_in - len(self.bad_rows)


def validate_block(job: IngestJob, number: int) -> BlockResult:
    """Validate block `number` of a Parquet file where it runs, against no stored ids, and write its records
    and quarantine rows as uncommitted files. The rule that needs the stored ids is applied by the flow,
    in the file's order, before it commits them (flows/ingest.py)."""
    started = time.perf_counter()
    settings = job.settings
    block_rows = settings.scoring.chunk_rows
    store = warehouse_of(settings)
    raw = parquet_block(Path(job.path), number, block_rows)
    checked = validate_rows(raw, settings.dataset, first_row=number * block_rows + 1)
    batch, day = job.batch(number), job.now.date().isoformat()
    bad = quarantine_table(checked.bad, job.name, job.now, job.run_id)
    good = records_table(checked.good, job.name, job.now, job.run_id)
    return BlockResult(
        number=number,
        rows_in=raw.num_rows,
        bad_rows=checked.bad["row_number"].to_numpy(dtype=np.int64),
        reasons=reasons(checked.bad),
        records=store.write_files("records", batch, good, partition=day) if good.num_rows else [],
        quarantine=store.write_files("quarantine", batch, bad, partition=day) if bad.num_rows else [],
        worker=f"{socket.gethostname()}:{os.getpid()}",
        seconds=time.perf_counter() - started,
    )
