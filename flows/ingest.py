"""`ingest`: every new file in the incoming folder is validated; rows are stored or quarantined.

With `[compute] engine = "dask"`, a Parquet file of at least `compute.ingest_min_rows` rows is validated on
the cluster, block by block (flows/ingest_work.py, flows/engine.py), and the flow commits the blocks in the
file's order. A worker validates its block against every rule but one: whether an id is already stored
depends on the blocks committed before it. So the flow commits a worker's files only when none of the
block's ids is stored at the version it commits from; otherwise (ids stored by an earlier block of the
file, or by another writer) it validates that block itself, as the local engine does. Both engines store
and quarantine the same rows. A CSV file is always validated in the flow: its blocks cannot be found
without reading the file up to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.drop_folder import (
    INGEST_TABLES,
    Entry,
    file_digest,
    file_note,
    put_aside,
    refusal,
    refusal_batches,
    refuse,
    resume,
    scan,
)
from flows.ingest_work import BlockResult, IngestJob, quarantine_table, reasons, records_table
from flows.runtime import open_store, publish, run_name, settings_from, this_flow_run_id, utc_now
from pipeline.config import Settings
from pipeline.validate import (
    SUPPORTED_SUFFIXES,
    UnreadableFile,
    Validated,
    as_text,
    id_windows,
    open_regular,
    parquet_block,
    read_blocks,
    validate_rows,
)
from warehouse.keys import StoredKeys
from warehouse.store import COMMIT_ATTEMPTS, CommitError, Conflict, Warehouse, batch_id

if TYPE_CHECKING:
    from flows.engine import BlockRun


@dataclass
class FileReport:
    """What happened to one incoming file."""

    name: str
    batch: str
    rows_in: int | None = None  # None when the file could not be read at all
    stored: int = 0
    quarantined: int = 0
    skipped: bool = False  # already ingested earlier (same content)
    refused: str | None = None  # why the whole file was refused
    left: str | None = None  # why it stays in the incoming folder (not taken yet, or changed while read)
    reasons: dict[str, int] = field(default_factory=dict)
    on_cluster: int = 0  # blocks validated on the Dask cluster and committed as the workers wrote them


EMPTY_FILE = "the file has a header but no rows: nothing was stored; check the export that wrote it"


# How many ids of a file are looked up in `records` at once, ahead of its blocks: one read of the stored
# ids per million rows instead of one per block (about 20 MB of ids held).
ID_WINDOW_ROWS = 1_000_000


class IdCheck:
    """Which ids of a file's blocks `records` holds at a version. For a Parquet file the ids of the coming
    blocks are looked up a window at a time (`StoredKeys`); other files are looked up block by block."""

    def __init__(self, store: Warehouse, path: Path, id_column: str, block_rows: int) -> None:
        self.keys = StoredKeys(store, "records")
        window = max(block_rows, ID_WINDOW_ROWS // block_rows * block_rows)  # whole blocks
        self.windows = id_windows(path, id_column, window)
        self.looked_ahead = 0  # the file's rows whose ids the windows read so far

    def stored(self, ids: pa.ChunkedArray, first_row: int, version: int) -> set[str]:
        """Which of `ids` (the block from file row `first_row` on) are stored at `version`."""
        last_row = first_row - 1 + len(ids)
        while self.looked_ahead < last_row:  # the window holding this block (windows of skipped blocks unread)
            window = next(self.windows, None)
            if window is None:
                break
            start, self.looked_ahead = self.looked_ahead + 1, self.looked_ahead + len(window)
            if self.looked_ahead >= last_row:
                self.keys.expect(window, start, version)
        return self.keys.among(ids, first_row, version)

    def committed(self, good: pa.Table, version: int) -> None:
        """`good` (a block's stored rows) was committed by this run, creating `version`."""
        self.keys.committed(good.column("row_number").to_numpy(), version)


def _commit_block(
    store: Warehouse, checked: Validated, batch: str, name: str, now: pd.Timestamp, version: int
) -> tuple[Validated, bool]:
    """The quarantine batch first, the records batch last: the records batch marks the block as done.

    The records are merged on their id against `version`, the snapshot their ids were checked against:
    if another writer stored records since, the merge raises `Conflict` and the block is checked again.
    Returns what was committed, and whether the records batch landed now (False: it was there already).
    """
    day = now.date().isoformat()
    checked, refusals = resume(store, "quarantine", batch, checked)
    bad = checked.bad if checked.rows_in or refusals != batch else file_note("empty", EMPTY_FILE)
    run_id = this_flow_run_id()
    store.commit("quarantine", refusals, quarantine_table(bad, name, now, run_id), partition=day)
    records = records_table(checked.good, name, now, run_id)
    landed = store.commit("records", batch, records, partition=day, read_version=version)
    return checked, landed


def _store_block(
    store: Warehouse,
    settings: Settings,
    raw: pa.Table,
    batch: str,
    name: str,
    now: pd.Timestamp,
    first_row: int,
    check: IdCheck,
) -> Validated | None:
    """Validate one block against the records stored now and commit it; again if another writer won.

    None: another run committed this block (the same file ingested at the same time) since it was looked up.
    Its ids are then in the snapshot, and checked against it every row would look like a duplicate.
    """
    dataset = settings.dataset
    ids = as_text(raw, dataset.id_column) if dataset.id_column in raw.column_names else None
    for _ in range(COMMIT_ATTEMPTS):
        version = store.version("records")
        if store.has_batch("records", batch):  # looked up at or after `version`: not in it when absent now
            return None
        stored = check.stored(ids, first_row, version) if ids is not None else set()
        checked = validate_rows(raw, dataset, stored, first_row=first_row)
        try:
            checked, landed = _commit_block(store, checked, batch, name, now, version)
        except Conflict:
            continue
        if not landed:
            return None
        check.committed(checked.good, store.committed_version("records"))
        return checked
    raise CommitError(f"{name}: records lost {COMMIT_ATTEMPTS} races with other writers; run again")


@dataclass(frozen=True)
class Stored:
    """What one block committed: its rows, those stored, and the quarantine's reasons ("column / rule": rows)."""

    rows_in: int
    stored: int
    reasons: dict[str, int]
    on_cluster: bool = False

    @classmethod
    def of(cls, raw: pa.Table, checked: Validated) -> Stored:
        """A block validated here: the rows it did not store were quarantined now or by a killed earlier run."""
        return cls(raw.num_rows, checked.good.num_rows, reasons(checked.bad))


def _blocks_here(
    store: Warehouse, settings: Settings, job: IngestJob, check: IdCheck
) -> Iterator[tuple[int, Stored | None]]:
    """Each block of the file (rows, what it committed: None when it was committed before), validated here."""
    first_row = 1
    for number, raw in enumerate(read_blocks(Path(job.path), settings.scoring.chunk_rows)):
        checked = _store_block(store, settings, raw, job.batch(number), job.name, job.now, first_row, check)
        yield raw.num_rows, None if checked is None else Stored.of(raw, checked)
        first_row += raw.num_rows


def cluster_blocks(settings: Settings, path: Path) -> int:
    """How many blocks of the file the cluster validates: all of a Parquet file of at least
    `compute.ingest_min_rows` rows with one id column when the engine is Dask, else none (0)."""
    compute, id_column = settings.compute, settings.dataset.id_column
    if compute.engine != "dask" or path.suffix.lower() != ".parquet":
        return 0
    try:
        with open_regular(path) as handle:
            source = pq.ParquetFile(handle)
            names = [str(name).strip() for name in source.schema_arrow.names]
            rows = source.metadata.num_rows
    except (UnreadableFile, OSError, pa.ArrowException):
        return 0  # read here, to say why
    if rows < max(compute.ingest_min_rows, 1) or names.count(id_column) != 1:
        return 0
    return -(-rows // settings.scoring.chunk_rows)


def _blocks_on_cluster(
    store: Warehouse, settings: Settings, job: IngestJob, check: IdCheck, blocks: int, units: list[dict[str, Any]]
) -> Iterator[tuple[int, Stored | None]]:
    """Each block of the file as `_blocks_here` gives it, validated on the cluster (and in the flow when the
    worker's files cannot be committed as they are), with a row of `units` for each."""
    from flows.engine import blocks_on_cluster, dask_client  # imports distributed only when a cluster is asked for

    block_rows = settings.scoring.chunk_rows
    ids = id_windows(Path(job.path), settings.dataset.id_column, block_rows)
    with dask_client(settings.compute) as client:
        for run in blocks_on_cluster(client, job, range(blocks), settings.compute.unit_attempts):
            block_ids = next(ids, None)
            outcome: Stored | str | None = "the worker could not read it"
            if block_ids is None:
                outcome = "its ids could not be read"
            elif run.result is not None:
                outcome = _commit_validated(store, job, run.result, block_ids, check)
            if not isinstance(outcome, str):
                units.append(_unit_row(run, outcome, "", len(block_ids or [])))
                yield len(block_ids or []), outcome
                continue
            # Validated here, as the local engine does; a block that cannot be read refuses the file here.
            raw = parquet_block(Path(job.path), run.number, block_rows)
            first_row = run.number * block_rows + 1
            checked = _store_block(store, settings, raw, job.batch(run.number), job.name, job.now, first_row, check)
            here = None if checked is None else Stored.of(raw, checked)
            units.append(_unit_row(run, here, outcome, raw.num_rows))
            yield raw.num_rows, here


def _commit_validated(
    store: Warehouse, job: IngestJob, result: BlockResult, ids: pa.ChunkedArray, check: IdCheck
) -> Stored | str | None:
    """Commit a block a worker validated, as `_store_block` commits one: its refusals, then its records, from
    the version its ids were checked at. Only when none of its ids is stored at that version (stored since by
    an earlier block of the file or by another writer, its rows would be duplicates) and no earlier run
    committed its refusals; otherwise returns why the flow must validate it itself. None: committed before."""
    batch = job.batch(result.number)
    first_row = result.number * job.settings.scoring.chunk_rows + 1
    version = store.version("records")
    if store.has_batch("records", batch):
        return None
    if refusal_batches(store, "quarantine", batch):
        return "an earlier run committed its refusals"
    if check.stored(ids, first_row, version):
        return "some of its ids are stored"
    store.commit_files("quarantine", batch, result.quarantine)
    try:
        landed = store.commit_files("records", batch, result.records, read_version=version)
    except Conflict:
        return "another writer stored records meanwhile"
    if not landed:
        return None
    good = np.setdiff1d(np.arange(first_row, first_row + result.rows_in), result.bad_rows)
    check.keys.committed(good, store.committed_version("records"))
    return Stored(result.rows_in, result.stored, result.reasons, on_cluster=True)


def _unit_row(run: BlockRun, outcome: Stored | None, why: str, rows: int) -> dict[str, Any]:
    """A block's row of the file's table artifact: where it was validated, and how it went on the cluster."""
    done = (
        "committed before" if outcome is None else ("on the cluster" if outcome.on_cluster else f"in the flow: {why}")
    )
    return {
        "block": run.number,
        "rows": rows,
        "stored": outcome.stored if outcome else 0,
        "quarantined": outcome.rows_in - outcome.stored if outcome else 0,
        "validated": done,
        "attempts": run.attempts,
        "workers lost": run.lost,
        "worker": run.result.worker if run.result else "",
        "seconds": round(run.result.seconds, 2) if run.result else 0.0,
    }


def publish_blocks(name: str, units: list[dict[str, Any]]) -> None:
    """The blocks of a file validated on the cluster, for the Prefect UI (a table artifact of the flow run)."""
    here = sum(1 for row in units if row["validated"].startswith("in the flow"))
    retried = sum(1 for row in units if row["attempts"] > 1 or row["workers lost"])
    create_table_artifact(
        key="ingest-blocks",
        table=units,
        description=f"{name} on Dask: {len(units)} block(s), {sum(row['rows'] for row in units)} rows, "
        f"{here} validated in the flow, {retried} retried",
    )


@task(cache_policy=NO_CACHE, task_run_name="ingest {entry.path.name}")
def ingest_file(store: Warehouse, settings: Settings, entry: Entry) -> FileReport:
    """Validate one file block by block (`scoring.chunk_rows` rows each) and commit each block atomically.

    A block's batch id comes from the file's content and the block's position, so a run killed
    midway is finished by the next one, and a file dropped again adds nothing.
    """
    logger = get_run_logger()
    path = entry.path
    digest = file_digest(entry)
    report = FileReport(name=path.name, batch=batch_id("ingest", digest))
    now = pd.Timestamp(utc_now())
    job = IngestJob(settings=settings, path=str(path), digest=digest, now=now, run_id=this_flow_run_id())
    first_row, done_before, committed = 1, 0, 0
    check = IdCheck(store, path, settings.dataset.id_column, settings.scoring.chunk_rows)
    blocks, units = cluster_blocks(settings, path), list[dict[str, Any]]()
    try:
        outcomes = (
            _blocks_on_cluster(store, settings, job, check, blocks, units)
            if blocks
            else _blocks_here(store, settings, job, check)
        )
        for rows_in, stored in outcomes:
            if stored is None:
                done_before += 1
            else:
                report.stored += stored.stored
                report.quarantined += stored.rows_in - stored.stored  # now or by a killed earlier run
                report.on_cluster += stored.on_cluster
                for reason, n in stored.reasons.items():
                    report.reasons[reason] = report.reasons.get(reason, 0) + n
                committed += 1
            first_row += rows_in
    except UnreadableFile as error:
        where = "" if first_row == 1 else f" (rows from {first_row} on; the rows before were ingested)"
        report.refused = f"{error}{where}"
        logger.warning("%s refused: %s", path.name, report.refused)
        batch, day = batch_id("ingest", digest, "refused", first_row), now.date().isoformat()
        refused = quarantine_table(refusal(report.refused), path.name, now, job.run_id)
        store.commit("quarantine", batch, refused, partition=day)
        store.commit("records", batch, store.table("records").schema.empty_table(), partition=day)
        return report
    finally:
        if units:
            publish_blocks(path.name, units)
    report.rows_in = first_row - 1
    report.skipped = committed == 0 and done_before > 0
    if report.skipped:
        logger.info("%s: this content was already ingested; moving it aside", path.name)
    else:
        logger.info(
            "%s: %d rows in, %d stored, %d quarantined", path.name, report.rows_in, report.stored, report.quarantined
        )
    return report


def _summary(reports: list[FileReport]) -> str:
    lines = ["# Ingest", "", "| file | rows in | stored | quarantined | note |", "|---|---|---|---|---|"]
    for r in reports:
        note = "already ingested" if r.skipped else (f"refused: {r.refused}" if r.refused else "")
        note = f"left in the folder: {r.left}" if r.left else note
        lines.append(
            f"| {r.name} | {r.rows_in if r.rows_in is not None else '-'} | {r.stored} | {r.quarantined} | {note} |"
        )
    reasons: dict[str, int] = {}
    for r in reports:
        for reason, n in r.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
    if reasons:
        lines += ["", "Quarantined rows by column / rule:", ""]
        lines += [f"- {reason}: {n}" for reason, n in sorted(reasons.items(), key=lambda item: -item[1])]
    return "\n".join(lines)


@flow(name="ingest", flow_run_name=run_name("ingest"))
def ingest(config: str | None = None) -> list[FileReport]:
    """Validate every file waiting in the incoming folder; store good rows, quarantine bad ones with a reason.

    A file with the same content as one ingested before is not ingested again. Files are moved out
    of the incoming folder once their batches are committed.
    """
    logger = get_run_logger()
    settings = settings_from(config)
    store = open_store(settings)
    arrivals = scan(settings.incoming_dir, settings.drop.settle_seconds)
    reports = [
        FileReport(
            name=r.path.name, batch=refuse(store, INGEST_TABLES, r, settings.rejected_dir, logger), refused=r.reason
        )
        for r in arrivals.refused
    ]
    for left in arrivals.left:
        logger.info("%s left in %s: %s", left.name, settings.incoming_dir, left.why)
    for entry in arrivals.ready:
        if entry.path.suffix.lower() not in SUPPORTED_SUFFIXES:
            logger.warning("%s is not a CSV or Parquet file; it will be refused", entry.path.name)
        try:
            report = ingest_file(store, settings, entry)
            destination = settings.rejected_dir if report.refused else settings.processed_dir
            report.left = put_aside(entry, destination, report.batch, logger)
        except FileNotFoundError:  # a run ingesting at the same time took it: its rows are stored once
            logger.info("%s was ingested by another run at the same time", entry.path.name)
            continue
        reports.append(report)
    reports += [FileReport(name=left.name, batch="", left=left.why) for left in arrivals.left]
    if not reports:
        logger.info("no new files in %s", settings.incoming_dir)
        return []
    stored = sum(r.stored for r in reports)
    quarantined = sum(r.quarantined for r in reports)
    publish(store)
    logger.info("ingested %d file(s): %d rows stored, %d quarantined", len(reports), stored, quarantined)
    create_markdown_artifact(key="ingest-summary", markdown=_summary(reports), description="ingest")
    return reports
