"""Which records a model still has to score, and the table of current predictions.

The watermark. Every commit of predictions by model version M carries the Delta application transaction
`score/M` whose value is the `records` version M has scored everything up to. Work is then "the rows
inserted into `records` after that version", read from the change feed: a cycle costs what arrived, not
what the warehouse holds. Two runs scoring with M at once both commit under `score/M`, so the log lets
one land and the other fails with `Conflict` and plans again from the new watermark: no record is scored
twice by one version. Units are whole `records` commits (an ingest block is one), so a unit's rows are a
fixed set, whatever order the change feed yields them in.

Without a watermark (a new champion, or a range no longer readable after vacuum), the records of one
`records` snapshot that have no prediction from M are scored in chunks: the intermediate commits record
"no complete pass" (-1) and the last one the snapshot's version, so a killed pass is resumed by the same
comparison, and its commits conflict with any other run of M as above.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from deltalake import CommitProperties, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from warehouse.store import FLOW_DUCKDB_CONFIG, Conflict, Warehouse, batch_id

PLAN_ATTEMPTS = 5
NO_COMPLETE_PASS = -1
CURRENT_APP = "current"  # watermark of `predictions_current`: the `predictions` version it reflects


@dataclass(frozen=True)
class Unit:
    """Records to score and the watermark their commit records."""

    rows: pa.Table  # record_id and the features
    watermark: int


def watermark_app(model_version: str) -> str:
    return f"score/{model_version}"


def pending_units(store: Warehouse, model_version: str, features: Sequence[str], chunk_rows: int) -> Iterator[Unit]:
    """The units of work for `model_version`, planned from the log as it is now."""
    columns = ["record_id", *features]
    upto = store.version("records")
    scored_upto = store.watermark("predictions", watermark_app(model_version))
    if scored_upto is not None and scored_upto >= 0:
        try:
            yield from _new_since(store, scored_upto, upto, columns, chunk_rows)
            return
        except LookupError:
            pass  # those versions were vacuumed: compare the whole snapshot instead
    yield from _not_yet_scored(store, model_version, upto, columns, chunk_rows)


def _inserted_rows(store: Warehouse, after: int, upto: int) -> list[tuple[int, int]]:
    """(version, rows inserted) for each `records` commit after `after` up to `upto`, from the log."""
    count = upto - after
    if count <= 0:
        return []
    try:
        history = store.delta("records").history(limit=store.version("records") - after)
    except Exception as error:  # expired log files
        raise LookupError(str(error)) from error
    inserted = {}
    for entry in history:
        version = int(entry.get("version", -1))
        if after < version <= upto:
            metrics = entry.get("operationMetrics") or {}
            inserted[version] = int(metrics.get("num_added_rows", metrics.get("num_target_rows_inserted", 0)) or 0)
    if len(inserted) != count:
        raise LookupError(f"the log of records no longer holds versions {after + 1}..{upto}")
    return sorted(inserted.items())


def _new_since(store: Warehouse, after: int, upto: int, columns: list[str], chunk_rows: int) -> Iterator[Unit]:
    """Units of whole `records` commits after `after`, each about `chunk_rows` rows (one commit at least)."""
    start, rows = after, 0
    versions = _inserted_rows(store, after, upto)
    for i, (version, inserted) in enumerate(versions):
        rows += inserted
        last = i == len(versions) - 1
        if rows >= chunk_rows or last:
            yield Unit(rows=store.inserted("records", start, version, columns), watermark=version)
            start, rows = version, 0


def _not_yet_scored(
    store: Warehouse, model_version: str, upto: int, columns: list[str], chunk_rows: int
) -> Iterator[Unit]:
    """Records of snapshot `upto` without a prediction by `model_version`, in chunks; the last chunk
    (or an empty one, when there is nothing to score) records `upto` as the watermark."""
    with store.connect(version={"records": upto}, tables=["records", "predictions"]) as con:
        selected = ", ".join(f'"{c}"' for c in columns)
        reader = con.sql(
            f"""
            SELECT {selected} FROM records
            ANTI JOIN (SELECT record_id FROM predictions WHERE model_version = $version) p USING (record_id)
            """,
            params={"version": model_version},
        ).to_arrow_reader(chunk_rows)
        previous: pa.Table | None = None
        for chunk in rebatched(reader, chunk_rows):
            if previous is not None:
                yield Unit(rows=previous, watermark=NO_COMPLETE_PASS)
            previous = chunk
        last = previous if previous is not None else store.table("records").schema.empty_table().select(columns)
        yield Unit(rows=last, watermark=upto)


def rebatched(reader: pa.RecordBatchReader, size: int) -> Iterator[pa.Table]:
    """Tables of exactly `size` rows (the last may be smaller), whatever sizes the reader yields."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        pending.append(batch)
        count += batch.num_rows
        while count >= size:
            table = pa.Table.from_batches(pending, schema=reader.schema)
            yield table.slice(0, size).combine_chunks()
            rest = table.slice(size)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending, schema=reader.schema).combine_chunks()


# ------------------------------------------------------------------------------- current predictions

_LATEST = "QUALIFY row_number() OVER (PARTITION BY record_id ORDER BY scored_at DESC, model_version DESC) = 1"


def refresh_current(store: Warehouse) -> int:
    """Bring `predictions_current` up to date with the predictions committed since it was last; returns how
    many rows were written.

    Its watermark (`current`) is the `predictions` version it reflects, recorded in the same commit, so
    two refreshes at once conflict and the loser starts again from the winner's version. New predictions
    of records that have none yet (every cycle's) are appended; when some record already has one (a new
    champion scoring what the old one scored), or when the change feed no longer reaches back that far,
    the table is rebuilt from `predictions` as a whole. Never a MERGE: it reads every file of the table on
    each run (no statistics of ids are kept), and its files come out in Arrow view types that a filtered
    read through pyarrow cannot compare (delta-io/delta-rs#4579).
    """
    for _ in range(PLAN_ATTEMPTS):
        reflected = store.watermark("predictions_current", CURRENT_APP)
        upto = store.version("predictions")
        if reflected is not None and reflected >= upto:
            return 0
        batch = batch_id("current", upto)
        properties = CommitProperties(app_transactions=[Transaction(batch, 0), Transaction(CURRENT_APP, upto)])
        try:
            if reflected is None:
                return _rebuild_current(store, upto, properties)
            try:
                new = store.inserted("predictions", reflected, upto)
            except LookupError:
                return _rebuild_current(store, upto, properties)
            target = store.delta("predictions_current")
            latest = _latest(new)
            if _any_current(store, int(target.version()), latest.column("record_id")):
                return _rebuild_current(store, upto, properties)
            write_deltalake(
                target,
                latest.cast(store.table("predictions_current").schema),
                mode="append",
                commit_properties=properties,
            )
            return latest.num_rows
        except CommitFailedError:
            continue
    raise Conflict("predictions_current: lost every race with other refreshes; the next run brings it up to date")


def _latest(rows: pa.Table) -> pa.Table:
    con = duckdb.connect(config=FLOW_DUCKDB_CONFIG)
    try:
        con.register("new_rows", rows)
        latest: pa.Table = con.sql(f"SELECT * FROM new_rows {_LATEST}").to_arrow_table()
        return latest
    finally:
        con.close()


def _any_current(store: Warehouse, version: int, ids: pa.ChunkedArray) -> bool:
    """Whether any of `ids` has a row in `predictions_current` at `version` (its id column read, joined)."""
    if len(ids) == 0:
        return False
    with store.connect(version={"predictions_current": version}, tables=["predictions_current"]) as con:
        con.register("new_ids", pa.table({"record_id": ids}))
        row = con.execute(
            "SELECT count(*) FROM (SELECT record_id FROM predictions_current SEMI JOIN new_ids USING (record_id))"
        ).fetchone()
    return row is not None and int(row[0]) > 0


def _rebuild_current(store: Warehouse, upto: int, properties: CommitProperties) -> int:
    with store.connect(version={"predictions": upto}, tables=["predictions"]) as con:
        latest: pa.Table = con.sql(f"SELECT * FROM predictions {_LATEST}").to_arrow_table()
    latest = latest.cast(store.table("predictions_current").schema)
    write_deltalake(store.delta("predictions_current"), latest, mode="overwrite", commit_properties=properties)
    return latest.num_rows
