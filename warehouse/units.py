"""Score work as references: units a process anywhere can read from the warehouse by themselves.

The local engine hands each unit's rows from the planner to the scorer in one process. On a cluster the
rows must not travel through the scheduler, so a unit is described by where its rows are, and the
worker reads them itself:

- with a watermark (the usual cycle): a range of `records` commits (after, upto], read from the change
  feed: the same units, in the same order, as `scoring.pending_units` plans;
- without one (a new champion, or history vacuumed): a group of data files of one `records` snapshot,
  less the records the model had scored at the `predictions` version the plan was made from.

Each reference is a deterministic function of the log at plan time, so a unit that runs twice (a worker
lost after finishing it, PrefectHQ/prefect#15442 for Prefect on Dask) reads the same rows again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote

import pyarrow as pa

from warehouse import scoring
from warehouse.store import FLOW_DUCKDB_CONFIG, Warehouse

ARRIVAL = "ingested_at"  # when a record was stored: what a backfill's `since` is compared with


@dataclass(frozen=True, kw_only=True)
class UnitRef:
    """One unit of score work, by reference: a few numbers and file names, never rows."""

    number: int  # 1, 2, ... in commit order
    watermark: int  # what its commit records under `score/<version>` (see warehouse/scoring.py)
    planned_rows: int  # rows in its source, from the log (a full pass scores fewer if some are scored)
    changes: tuple[int, int] | None = None  # (after, upto]: `records` commits read from the change feed
    files: tuple[str, ...] = ()  # or: these data files of `records`...
    scored_at_version: int = -1  # ...less the records scored by the model at this `predictions` version
    since: datetime | None = None  # ...ingested at or after this (a backfill, warehouse/backfill.py)

    @property
    def kind(self) -> str:
        if self.since is not None:
            return "backfill"
        return "new records" if self.changes is not None else "full pass"


def plan_units(store: Warehouse, model_version: str, chunk_rows: int) -> list[UnitRef]:
    """The units `model_version` still has to score, planned from the log as it is now (as `pending_units`)."""
    upto = store.version("records")
    after = scoring.change_feed_after(store, model_version)
    if after is not None:
        try:
            return change_units(scoring._inserted_rows(store, after, upto), after, chunk_rows)
        except LookupError:
            pass  # those versions are no longer in the log: compare the whole snapshot instead
    return file_units(record_files(store, upto), upto, store.version("predictions"), chunk_rows)


def change_units(inserted: Sequence[tuple[int, int]], after: int, chunk_rows: int) -> list[UnitRef]:
    """Whole `records` commits after `after`, grouped into units of about `chunk_rows` rows (at least one
    commit each); `inserted` is (version, rows inserted) per commit, in version order."""
    units: list[UnitRef] = []
    start, rows = after, 0
    for i, (version, count) in enumerate(inserted):
        rows += count
        if rows >= chunk_rows or i == len(inserted) - 1:
            units.append(UnitRef(number=len(units) + 1, watermark=version, planned_rows=rows, changes=(start, version)))
            start, rows = version, 0
    return units


def file_units(files: Sequence[tuple[str, int]], upto: int, scored_at: int, chunk_rows: int) -> list[UnitRef]:
    """The files of `records` snapshot `upto` ((path, rows) each), grouped into units of about `chunk_rows`
    rows. Every unit but the last records "no complete pass"; the last (or an empty one, when there are no
    files) records `upto`, as the local full pass does."""
    groups = group_files(files, chunk_rows) or [([], 0)]
    last = len(groups)
    return [
        UnitRef(
            number=n,
            watermark=upto if n == last else scoring.NO_COMPLETE_PASS,
            planned_rows=count,
            files=tuple(paths),
            scored_at_version=scored_at,
        )
        for n, (paths, count) in enumerate(groups, start=1)
    ]


def group_files(files: Sequence[tuple[str, int]], chunk_rows: int) -> list[tuple[list[str], int]]:
    """Files ((path, rows) each) in groups of about `chunk_rows` rows (a file is never split)."""
    groups: list[tuple[list[str], int]] = []
    current: list[str] = []
    rows = 0
    for path, count in files:
        current.append(path)
        rows += count
        if rows >= chunk_rows:
            groups.append((current, rows))
            current, rows = [], 0
    if current:
        groups.append((current, rows))
    return groups


def record_files(
    store: Warehouse, version: int, table: str = "records", since: datetime | None = None
) -> list[tuple[str, int]]:
    """(file as `Warehouse.files` names it, rows) for each data file of `table` at `version`, sorted by name;
    with `since`, only the files whose latest `ingested_at` in the log's statistics is not before it (a file
    without statistics is kept: its rows are filtered when read)."""
    actions = store.delta(table, version).get_add_actions(flatten=True)
    paths = [unquote(str(path)) for path in actions.column("path").to_pylist()]
    counts = {path: int(rows) for path, rows in zip(paths, actions.column("num_records").to_pylist(), strict=True)}
    if since is not None and f"max.{ARRIVAL}" in actions.schema.names:
        # The log keeps times to the millisecond: a file is left out only when it is surely too old.
        bound = since - timedelta(milliseconds=1)
        latest = actions.column(f"max.{ARRIVAL}").to_pylist()
        counts = {
            path: n for (path, n), last in zip(counts.items(), latest, strict=True) if last is None or last >= bound
        }
    root = unquote(store.uri(table)).removeprefix("file://") + "/"
    files: list[tuple[str, int]] = []
    for name in store.files(table, version):
        relative = unquote(name).removeprefix("file://").removeprefix(root)
        if relative in counts or since is None:
            files.append((name, counts.get(relative, 0)))
    return sorted(files)


def read_unit(store: Warehouse, unit: UnitRef, model_version: str, columns: Sequence[str]) -> pa.Table:
    """The rows of `unit` (the columns asked for), read from the warehouse by whoever runs it."""
    if unit.changes is not None:
        after, upto = unit.changes
        return store.inserted("records", after, upto, list(columns))
    if not unit.files:
        return store.table("records").schema.empty_table().select(list(columns))
    import duckdb  # only the full pass needs a session

    con = duckdb.connect(config=FLOW_DUCKDB_CONFIG)
    try:
        con.register("unit_records", store.files_dataset("records", list(unit.files)))
        con.register("predictions", store.dataset("predictions", unit.scored_at_version))
        selected = ", ".join(f'"{c}"' for c in columns)
        arrived = "" if unit.since is None else f"WHERE {ARRIVAL} >= $since"
        rows: pa.Table = con.sql(
            f"""
            SELECT {selected} FROM unit_records
            ANTI JOIN (SELECT record_id FROM predictions WHERE model_version = $version) p USING (record_id)
            {arrived}
            ORDER BY record_id
            """,
            params={"version": model_version} | ({} if unit.since is None else {"since": unit.since}),
        ).to_arrow_table()
    finally:
        con.close()
    return rows.cast(pa.schema([store.table("records").schema.field(c) for c in columns]))
