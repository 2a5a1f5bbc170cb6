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

Backfills. `scorehouse score --version M --since DATE` scores, with a version that is not champion, the
records ingested since DATE that M has no prediction of (warehouse/backfill.py). Its commits carry
`score/M` with the value they read (so they conflict with any other scoring by M, and the watermark does
not move) and `backfill/M`, the `records` version the backfill planned at. The change feed never compares
with what M has scored, so once M has backfilled records beyond its watermark (it was champion before, is
promoted again), its next scoring is a full pass (`follows_change_feed`), which leaves them out.

The current prediction of a record (`predictions_current`) is its latest one that counts: a backfill's
counts only when its version is the champion (`CURRENT_RULE`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from deltalake import CommitProperties, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from warehouse.store import FLOW_DUCKDB_CONFIG, Conflict, Warehouse, batch_id, writer_properties

PLAN_ATTEMPTS = 5
QUIET_SECONDS = 5.0  # how long `predictions` must see no commit before a run that lost a race plans again
LONGEST_WAIT = 600.0  # seconds a run that lost a race waits for that quiet at most, then plans anyway
REBUILD_BATCH_ROWS = 100_000
REBUILD_FILE_ROWS = 1_000_000  # rows per file of a rebuilt `predictions_current`
NO_COMPLETE_PASS = -1
CURRENT_APP = "current"  # watermark of `predictions_current`: the `predictions` version it reflects
CURRENT_CHAMPION_APP = "current/champion"  # the champion `predictions_current` was built for (`champion_mark`)


@dataclass(frozen=True)
class Unit:
    """Records to score and the watermark their commit records."""

    rows: pa.Table  # record_id and the features
    watermark: int


def watermark_app(model_version: str) -> str:
    return f"score/{model_version}"


def backfill_app(model_version: str) -> str:
    """The `records` version up to which a backfill may have scored with `model_version`."""
    return f"backfill/{model_version}"


def follows_change_feed(watermark: int | None, backfilled_upto: int | None) -> bool:
    """Whether a model's next scoring may take only the records after its watermark from the change feed.
    Not without a complete pass (no watermark, or "no complete pass"), nor when a backfill may have scored
    records after the watermark: the change feed would score them again, so a full pass, which compares with
    what the model scored, is made once (its last commit records a watermark past the backfill)."""
    if watermark is None or watermark < 0:
        return False
    return backfilled_upto is None or backfilled_upto <= watermark


def change_feed_after(store: Warehouse, model_version: str) -> int | None:
    """The watermark `model_version` may go on from by the change feed, or None when it must make a full pass."""
    watermark = store.watermark("predictions", watermark_app(model_version))
    backfilled = store.watermark("predictions", backfill_app(model_version))
    return watermark if follows_change_feed(watermark, backfilled) else None


def wait_until_quiet(
    store: Warehouse, quiet_seconds: float = QUIET_SECONDS, poll_seconds: float = 0.25, longest: float = LONGEST_WAIT
) -> None:
    """Return once `predictions` has seen no commit for `quiet_seconds`: what a run that lost a race does
    before planning again. Planning at once would score the units the winner is scoring, and lose again
    every time the winner commits its next unit (two cycles over the same 1M records both gave up after
    five lost races); the winner commits about once per unit, so a quiet of a few units means it is done.
    It never waits longer than `longest` seconds: a long backfill of another version commits without pause."""
    seen, since = store.version("predictions"), time.monotonic()
    deadline = since + longest
    while time.monotonic() - since < quiet_seconds and time.monotonic() < deadline:
        time.sleep(poll_seconds)
        latest = store.version("predictions")
        if latest != seen:
            seen, since = latest, time.monotonic()


def pending_units(store: Warehouse, model_version: str, features: Sequence[str], chunk_rows: int) -> Iterator[Unit]:
    """The units of work for `model_version`, planned from the log as it is now."""
    columns = ["record_id", *features]
    upto = store.version("records")
    after = change_feed_after(store, model_version)
    if after is not None:
        try:
            yield from _new_since(store, after, upto, columns, chunk_rows)
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
    with store.connect(version={"records": upto}, tables=["records", "predictions"], streaming=True) as con:
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

# The rule of the current prediction, in one place: a record's current prediction is its latest prediction
# that counts. The champion's scoring always counts; a backfill (`backfill` true) counts only when its version
# is the champion now (it was backfilled, then promoted: what it scored then is the champion's too), so
# scoring history with another version never changes what `predictions_current` says. `$champion` may be
# NULL (no champion known): then no backfill counts. Ties of time go to the higher version name.
# The winners are chosen on their keys alone, then their whole rows fetched: a window over the whole rows
# (explanations included) took 3.8 s for 1M predictions, this 2.2 s. A batch holds a record once, so
# (record_id, batch_id) names one prediction.
CURRENT_RULE = """
    WITH winners AS (
        SELECT record_id, batch_id FROM {rows}
        WHERE NOT coalesce(backfill, false) OR model_version = $champion
        QUALIFY row_number() OVER (PARTITION BY record_id ORDER BY scored_at DESC, model_version DESC) = 1
    )
    SELECT * FROM {rows} SEMI JOIN winners USING (record_id, batch_id)
"""


def current_predictions(con: duckdb.DuckDBPyConnection, rows: str, champion: str | None) -> pa.Table:
    """The current prediction of each record among the predictions `rows` names (a table or view of `con`)."""
    table: pa.Table = con.sql(CURRENT_RULE.format(rows=rows), params={"champion": champion}).to_arrow_table()
    return table


def champion_mark(champion: str | None) -> int:
    """The champion as a number a Delta application transaction can hold (-1: none)."""
    if champion is None:
        return -1
    return int(hashlib.sha256(champion.encode()).hexdigest()[:15], 16)


def refresh_current(store: Warehouse, champion: str | None = None) -> int:
    """Bring `predictions_current` up to date with the predictions committed since it was last, for the
    `champion` now; returns how many rows were written.

    Its watermark (`current`) is the `predictions` version it reflects, recorded in the same commit with the
    champion it was built for, so two refreshes at once conflict and the loser starts again from the
    winner's version. New predictions of records that have none yet (every cycle's) are appended; when some
    record already has one (a new champion scoring what the old one scored), when the champion changed
    (a backfill of the new one may count now), or when the change feed no longer reaches back that far, the
    table is rebuilt from `predictions` as a whole. Never a MERGE: it reads every file of the table on each
    run (no statistics of ids are kept), and its files come out in Arrow view types that a filtered read
    through pyarrow cannot compare (delta-io/delta-rs#4579).
    """
    mark = champion_mark(champion)
    for _ in range(PLAN_ATTEMPTS):
        reflected = store.watermark("predictions_current", CURRENT_APP)
        same_champion = store.watermark("predictions_current", CURRENT_CHAMPION_APP) == mark
        upto = store.version("predictions")
        if reflected is not None and reflected >= upto and same_champion:
            return 0
        batch = batch_id("current", upto, mark)
        properties = CommitProperties(
            app_transactions=[
                Transaction(batch, 0),
                Transaction(CURRENT_APP, upto),
                Transaction(CURRENT_CHAMPION_APP, mark),
            ]
        )
        try:
            if reflected is None or not same_champion:
                return _rebuild_current(store, upto, champion, properties)
            try:
                new = store.inserted("predictions", reflected, upto)
            except LookupError:
                return _rebuild_current(store, upto, champion, properties)
            target = store.delta("predictions_current")
            latest = _latest(new, champion)
            if _any_current(store, int(target.version()), latest.column("record_id")):
                return _rebuild_current(store, upto, champion, properties)
            write_deltalake(
                target,
                latest.cast(store.table("predictions_current").schema),
                mode="append",
                commit_properties=properties,
                writer_properties=writer_properties(store.table("predictions_current")),
            )
            return latest.num_rows
        except CommitFailedError:
            continue
    raise Conflict("predictions_current: lost every race with other refreshes; the next run brings it up to date")


def _latest(rows: pa.Table, champion: str | None) -> pa.Table:
    con = duckdb.connect(config=FLOW_DUCKDB_CONFIG)
    try:
        con.register("new_rows", rows)
        return current_predictions(con, "new_rows", champion)
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


def _rebuild_current(store: Warehouse, upto: int, champion: str | None, properties: CommitProperties) -> int:
    """Write `predictions_current` again from the whole of `predictions`, streamed into files of
    `REBUILD_FILE_ROWS` rows that replace the table's in one commit: memory stays bounded by a batch in
    Python and by DuckDB's limit in the query, whatever the table's size."""
    schema = store.table("predictions_current").schema
    written = 0

    def batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        nonlocal written
        for batch in reader:
            written += batch.num_rows
            yield batch.cast(schema)

    read = store.version("predictions_current")  # a refresh that commits meanwhile makes this one start again
    with store.connect(version={"predictions": upto}, tables=["predictions"], streaming=True) as con:
        reader = con.sql(CURRENT_RULE.format(rows="predictions"), params={"champion": champion}).to_arrow_reader(
            REBUILD_BATCH_ROWS
        )
        prefix = batch_id("current", upto, champion_mark(champion))
        actions = store.stream_files("predictions_current", batches(reader), prefix=prefix, file_rows=REBUILD_FILE_ROWS)
    store.replace_files("predictions_current", actions, properties, read_version=read)
    return written
