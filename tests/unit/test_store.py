"""The Delta store's guarantees: each batch lands exactly once and whole, even with two writers at once.

Concurrency is proven with two real processes (spawned once for the module) released together by a
barrier, round after round: each round both try the same thing at the same moment, and the log decides.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import warehouse.store
from warehouse.catalog import build_catalog
from warehouse.maintenance import compact
from warehouse.store import CommitError, Conflict, Table, Warehouse, batch_id, whole_batches

TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("value", pa.float64()),
        ("colour", pa.string()),
        ("at", TS),
        ("day", pa.string()),
        ("batch_id", pa.string()),
    ]
)
# Statistics only on the time column: the log must never hold an id or a value.
THINGS = Table(name="things", partition_by="day", schema=SCHEMA, stats_columns=("at",))
KEYED = Table(name="keyed", partition_by="day", schema=SCHEMA, key="id", stats_columns=("at",))
ROUNDS = 12
AT = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def open_store(root: Path) -> Warehouse:
    return Warehouse(root, [THINGS, KEYED])


@pytest.fixture
def store(tmp_path: Path) -> Warehouse:
    warehouse_ = open_store(tmp_path / "wh")
    warehouse_.init()
    return warehouse_


def rows(ids: list[str], value: float = 1.0, colour: str = "red") -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "value": pa.array([value] * n, pa.float64()),
            "colour": pa.array([colour] * n, pa.string()),
            "at": pa.array([AT] * n, TS),
        }
    )


def ids_of(store: Warehouse, table: str, version: int | None = None) -> list[str]:
    return sorted(str(v) for v in store.dataset(table, version).to_table(columns=["id"]).column("id").to_pylist())


# ------------------------------------------------------------------------- two processes, one barrier


@dataclass(frozen=True)
class Job:
    """What a worker does once the barrier releases it: `init`, or `commit` (to `table`, as `batch`)."""

    kind: str
    root: str
    table: str = "things"
    batch: str = ""
    ids: tuple[str, ...] = ()
    marks: tuple[tuple[str, int], ...] = ()
    read_version: int | None = None


def outcome_of(job: Job) -> str:
    """Run one job; its outcome as a word: `landed`, `already` (the batch was in the log), `conflict`, `done`."""
    store = open_store(Path(job.root))
    if job.kind == "init":
        store.init()
        return "done"
    try:
        landed = store.commit(
            job.table,
            job.batch,
            rows(list(job.ids)),
            partition="2026-11-21",
            marks=list(job.marks),
            read_version=job.read_version,
        )
    except Conflict:
        return "conflict"
    return "landed" if landed else "already"


def serve(jobs: Any, results: Any, barrier: Any) -> None:
    """A worker: for each job, wait for the other worker at the barrier, then run it at the same moment."""
    while True:
        job = jobs.get()
        if job is None:
            return
        barrier.wait(timeout=120)
        try:
            results.put(outcome_of(job))
        except BaseException:
            results.put("error: " + traceback.format_exc())


@dataclass
class Pair:
    """Two worker processes that run their jobs at the same moment."""

    queues: list[Any]
    results: list[Any]
    processes: list[SpawnProcess]

    def race(self, first: Job, second: Job) -> list[str]:
        self.queues[0].put(first)
        self.queues[1].put(second)
        outcomes = [results.get(timeout=180) for results in self.results]
        errors = [o for o in outcomes if o.startswith("error")]
        assert not errors, errors[0]
        return outcomes


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    context: SpawnContext = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    queues, results = [context.Queue(), context.Queue()], [context.Queue(), context.Queue()]
    processes = [context.Process(target=serve, args=(queues[i], results[i], barrier), daemon=True) for i in range(2)]
    for process in processes:
        process.start()
    try:
        yield Pair(queues=queues, results=results, processes=processes)
    finally:
        for queue in queues:
            queue.put(None)
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


# ------------------------------------------------------------------------------------------- set-up


def test_init_creates_empty_typed_tables_and_running_it_again_changes_nothing(store: Warehouse) -> None:
    """Every table exists at version 0 with the declared schema; a second `init` adds no commit."""
    for name in ("things", "keyed"):
        assert store.version(name) == 0
        assert store.dataset(name).schema.equals(SCHEMA)
    store.init()
    open_store(store.root).init()  # another process opening the same warehouse
    assert [store.version(n) for n in ("things", "keyed")] == [0, 0]


def init_race(pair: Pair, root: Path) -> dict[str, list[str]]:
    """Two processes run `init` on the fresh warehouse `root` at the same moment; each table's commit operations."""
    assert pair.race(Job("init", str(root)), Job("init", str(root))) == ["done", "done"]
    store = open_store(root)
    return {name: [str(entry["operation"]) for entry in store.delta(name).history()] for name in ("things", "keyed")}


def test_init_from_two_processes_at_once_succeeds_in_both_and_leaves_usable_tables(pair: Pair, tmp_path: Path) -> None:
    """Two processes creating the same fresh warehouse at the same moment both succeed; every table has the
    declared schema, no rows, and takes a commit."""
    for round_ in range(ROUNDS):
        root = tmp_path / f"wh-{round_}"
        operations = init_race(pair, root)
        store = open_store(root)
        for name, done in operations.items():
            assert set(done) == {"CREATE TABLE"}, f"round {round_}: {name}: {done}"
            assert store.dataset(name).schema.equals(SCHEMA) and store.dataset(name).count_rows() == 0
        assert store.commit("things", "b1", rows(["a"]), partition="2026-11-21")


def test_init_from_two_processes_at_once_creates_each_table_exactly_once(pair: Pair, tmp_path: Path) -> None:
    """Each table's log holds one CREATE TABLE, whichever process won (a second one replaces the table's
    metadata and conflicts with writers that started in between)."""
    creates = []
    for round_ in range(ROUNDS):
        operations = init_race(pair, tmp_path / f"wh-{round_}")
        creates += [len(done) for done in operations.values()]
    assert creates == [1] * len(creates), f"CREATE TABLE commits per table over {ROUNDS} rounds: {creates}"


# ------------------------------------------------------------------------------------------ one batch


def test_batch_id_is_deterministic_and_depends_on_every_part() -> None:
    assert batch_id("ingest", "abc") == batch_id("ingest", "abc")
    assert batch_id("ingest", "abc") != batch_id("ingest", "abd")
    assert batch_id("a", "bc") != batch_id("ab", "c")


def test_a_batch_commits_once_and_a_repeat_adds_nothing(store: Warehouse) -> None:
    """The second commit of a batch id returns False and adds no row and no version."""
    assert store.commit("things", "b1", rows(["a", "b"]), partition="2026-11-21") is True
    version = store.version("things")
    assert store.commit("things", "b1", rows(["a", "b", "c"]), partition="2026-11-22") is False
    assert store.version("things") == version
    assert ids_of(store, "things") == ["a", "b"]
    assert store.has_batch("things", "b1") and not store.has_batch("things", "b2")


def test_an_empty_batch_is_recorded_without_rows(store: Warehouse) -> None:
    """An input with no rows still marks its batch as handled: found by `has_batch`, not committed again."""
    assert store.commit("things", "empty", rows([]), partition="2026-11-21") is True
    assert store.has_batch("things", "empty")
    assert store.dataset("things").count_rows() == 0
    assert store.commit("things", "empty", rows([]), partition="2026-11-21") is False


def test_the_day_and_batch_columns_are_filled_from_the_commit(store: Warehouse) -> None:
    """Whatever the rows say, `day` is the commit's partition and `batch_id` its batch."""
    given = (
        rows(["a", "b"])
        .append_column("day", pa.array(["1999-01-01"] * 2))
        .append_column("batch_id", pa.array(["forged"] * 2))
    )
    store.commit("things", "b1", given, partition="2026-11-21")
    stored = store.dataset("things").to_table()
    assert set(stored.column("day").to_pylist()) == {"2026-11-21"}
    assert set(stored.column("batch_id").to_pylist()) == {"b1"}


def test_the_schema_is_enforced_and_a_missing_column_is_named(store: Warehouse) -> None:
    """A batch without a schema column is refused before anything is written, with the column's name; values
    are cast to the schema's types."""
    with pytest.raises(CommitError, match="value"):
        store.commit("things", "b1", rows(["a"]).drop_columns(["value"]), partition="2026-11-21")
    assert store.version("things") == 0 and not store.has_batch("things", "b1")
    ints = rows(["a"]).set_column(1, "value", pa.array([7], pa.int32()))
    store.commit("things", "b2", ints.append_column("extra", pa.array(["dropped"])), partition="2026-11-21")
    assert store.dataset("things").schema.equals(SCHEMA)
    assert store.dataset("things").to_table().column("value").to_pylist() == [7.0]


def test_a_full_disk_raises_a_one_line_actionable_error_and_leaves_nothing_visible(
    store: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails with ENOSPC becomes a CommitError that says what to do; the batch is not in the log."""
    store.commit("things", "b0", rows(["a"]), partition="2026-11-21")
    version = store.version("things")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(warehouse.store, "write_deltalake", full)
    with pytest.raises(CommitError) as raised:
        store.commit("things", "b1", rows(["b", "c"]), partition="2026-11-21")
    message = str(raised.value)
    assert "\n" not in message
    assert "b1" in message and "things" in message and "No space left" in message
    assert "free disk space" in message
    monkeypatch.undo()
    assert store.version("things") == version
    assert not store.has_batch("things", "b1")
    assert ids_of(store, "things") == ["a"]


# ------------------------------------------------------------------------------------- two writers


def test_two_processes_committing_the_same_batch_at_once_land_it_exactly_once(pair: Pair, store: Warehouse) -> None:
    """Released together, round after round, two writers of one batch id: one lands, the other finds it."""
    for round_ in range(ROUNDS):
        job = Job("commit", str(store.root), batch=f"same-{round_}", ids=(f"r{round_}-a", f"r{round_}-b"))
        outcomes = pair.race(job, job)
        assert sorted(outcomes) == ["already", "landed"], f"round {round_}: {outcomes}"
    stored = ids_of(store, "things")
    assert len(stored) == 2 * ROUNDS and len(set(stored)) == 2 * ROUNDS


def test_a_batch_that_lands_between_the_check_and_the_write_is_not_written_again(
    store: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race above, made exact: the other writer lands the same batch just after this writer looked for it
    in the log. The write must conflict (and the commit return False), not add the batch a second time."""
    other = open_store(store.root)
    real_delta = Warehouse.delta
    looked: list[str] = []

    def snapshot_then_the_other_writer_lands(self: Warehouse, name: str, version: object = None) -> object:
        table = real_delta(self, name, version)  # type: ignore[arg-type]
        if self is store and version is None and not looked:
            looked.append(name)
            assert other.commit(name, "b1", rows(["a", "b"]), partition="2026-11-21")
        return table

    monkeypatch.setattr(Warehouse, "delta", snapshot_then_the_other_writer_lands)
    landed = store.commit("things", "b1", rows(["a", "b"]), partition="2026-11-21")
    monkeypatch.undo()
    assert looked == ["things"]
    assert ids_of(store, "things") == ["a", "b"], "the batch is stored twice"
    assert landed is False


def test_two_writers_of_the_same_claim_from_one_snapshot_never_both_land(pair: Pair, store: Warehouse) -> None:
    """Different batches that make the same claim (an app id in `marks`) from the same snapshot: one lands,
    the other raises Conflict, every round."""
    for round_ in range(ROUNDS):
        version = store.version("things")
        claim = ((f"claim/{round_}", 0),)
        first = Job("commit", str(store.root), batch=f"x-{round_}", ids=("x",), marks=claim, read_version=version)
        second = Job("commit", str(store.root), batch=f"y-{round_}", ids=("y",), marks=claim, read_version=version)
        outcomes = pair.race(first, second)
        assert sorted(outcomes) == ["conflict", "landed"], f"round {round_}: {outcomes}"
    assert store.dataset("things").count_rows() == ROUNDS


def test_two_writers_of_the_same_claim_at_once_conflict_unless_one_saw_the_other(pair: Pair, store: Warehouse) -> None:
    """Without a pinned snapshot, two writers of the same claim at the same moment: one lands and the other
    raises Conflict, or, when the second started after the first had landed, both land one after the other
    (each commit then names the claim in its own version of the log)."""
    conflicts = 0
    for round_ in range(ROUNDS):
        claim = ((f"claim/{round_}", 0),)
        first = Job("commit", str(store.root), batch=f"x-{round_}", ids=("x",), marks=claim)
        second = Job("commit", str(store.root), batch=f"y-{round_}", ids=("y",), marks=claim)
        outcomes = sorted(pair.race(first, second))
        assert outcomes in (["conflict", "landed"], ["landed", "landed"]), f"round {round_}: {outcomes}"
        conflicts += outcomes == ["conflict", "landed"]
        assert store.has_batch("things", f"x-{round_}") or store.has_batch("things", f"y-{round_}")
    print(f"same claim at once: {conflicts} of {ROUNDS} rounds conflicted, the others landed in sequence")


def test_two_writers_of_overlapping_ids_to_a_keyed_table_never_store_an_id_twice(pair: Pair, store: Warehouse) -> None:
    """Both checked their ids against the same snapshot; one lands, the other gets Conflict (it must check its
    rows again): an id is never stored twice."""
    for round_ in range(ROUNDS):
        version = store.version("keyed")
        shared = f"shared-{round_}"
        first = Job("commit", str(store.root), "keyed", f"a-{round_}", (shared, f"a-{round_}"), read_version=version)
        second = Job("commit", str(store.root), "keyed", f"b-{round_}", (shared, f"b-{round_}"), read_version=version)
        outcomes = pair.race(first, second)
        assert sorted(outcomes) == ["conflict", "landed"], f"round {round_}: {outcomes}"
    stored = ids_of(store, "keyed")
    assert len(stored) == len(set(stored)) == 2 * ROUNDS


def test_a_keyed_commit_from_a_snapshot_older_than_the_table_conflicts(store: Warehouse) -> None:
    """A writer whose rows were checked against version v conflicts with any commit after v, even one that
    landed long before it tried (the order does not matter, only the snapshot)."""
    version = store.version("keyed")
    assert store.commit("keyed", "first", rows(["a"]), partition="2026-11-21", read_version=version)
    with pytest.raises(Conflict):
        store.commit("keyed", "second", rows(["a", "b"]), partition="2026-11-21", read_version=version)
    assert ids_of(store, "keyed") == ["a"]
    assert not store.has_batch("keyed", "second")


# ------------------------------------------------------------------------------------ reading history


def test_time_travel_reads_each_version_as_it_was(store: Warehouse) -> None:
    store.commit("things", "b1", rows(["a"]), partition="2026-11-21")
    store.commit("things", "b2", rows(["b", "c"]), partition="2026-11-21")
    assert ids_of(store, "things", 0) == []
    assert ids_of(store, "things", 1) == ["a"]
    assert ids_of(store, "things", 2) == ["a", "b", "c"]
    assert store.delta("things", version=1).version() == 1
    assert store.delta("things").version() == 2  # the latest snapshot is not moved by time travel
    assert len(store.files("things", 1)) == 1 and len(store.files("things")) == 2


def test_inserted_returns_the_rows_a_range_added_and_kept_and_ignores_compaction_and_rewrites(
    store: Warehouse,
) -> None:
    """The change feed of a range holds exactly the rows appended in it and still there at its end: a compaction
    (no data change) adds no insert, nor do the kept rows an erasure wrote again; an erased row is not new."""
    store.commit("things", "b1", rows(["a", "b"]), partition="2026-11-21")
    store.commit("things", "b2", rows(["c"]), partition="2026-11-21")
    store.commit("things", "b3", rows(["d", "e"]), partition="2026-11-21")
    appended = store.version("things")
    compact(store, "things", target_mb=64)
    compacted = store.version("things")
    assert compacted > appended and len(store.files("things")) == 1
    assert store.erase("things", "id", ["a"]) == 1  # rewrites the one file: b..e deleted and inserted again
    erased = store.version("things")
    store.commit("things", "b4", rows(["a"]), partition="2026-11-22")  # sent again later: new again
    again = store.version("things")

    def ids(after: int, upto: int) -> list[str]:
        return sorted(str(i) for i in store.inserted("things", after, upto, columns=["id"]).column("id").to_pylist())

    assert store.inserted("things", 0, appended).schema.equals(SCHEMA)  # the table's own types
    assert ids(0, appended) == ["a", "b", "c", "d", "e"]
    assert ids(1, 2) == ["c"]
    assert ids(appended, compacted) == []
    assert ids(compacted, erased) == []
    assert ids(0, erased) == ["b", "c", "d", "e"]
    assert ids(compacted, again) == ["a"]
    assert ids(erased, erased) == []


def test_a_rewrite_takes_every_file_holding_a_batch_of_the_files_it_chose() -> None:
    batches_of = {"f1": {"b1", "b2"}, "f2": {"b2", "b3"}, "f3": {"b3"}, "f4": {"b4"}}
    assert whole_batches(batches_of, {"f1"}) == ({"b1", "b2", "b3"}, {"f1", "f2", "f3"})
    assert whole_batches(batches_of, {"f4"}) == ({"b4"}, {"f4"})


def test_erase_rewrites_whole_files_in_the_tables_types_so_filtered_reads_still_work(store: Warehouse) -> None:
    """delta-rs's own delete writes strings as `string_view`, which a filtered pyarrow read cannot compare; an
    erasure leaves every file in the table's types, and `retype` repairs a file such a delete wrote."""
    store.commit("things", "b1", rows(["a", "b", "c"]), partition="2026-11-21")
    store.commit("things", "b2", rows(["d"]), partition="2026-11-21")

    def types() -> set[str]:
        return {str(pq.read_schema(f).field("id").type) for f in store.files("things")}

    def lookup(value: str) -> int:
        with store.connect(tables=["things"]) as con:
            row = con.execute("SELECT count(*) FROM things WHERE id = ?", [value]).fetchone()
        assert row is not None
        return int(row[0])

    assert store.erase("things", "id", ["b", "zz"]) == 1
    assert types() == {"string"}
    assert (lookup("a"), lookup("b"), lookup("d")) == (1, 0, 1)
    assert store.erase("things", "id", ["nobody"]) == 0

    store.delta("things").delete("id = 'c'")  # as an older version of `forget` did
    assert types() == {"string", "string_view"}
    assert store.retype("things") == 1  # the one row left in the file the delete wrote
    assert types() == {"string"}
    assert (lookup("a"), lookup("c"), lookup("d")) == (1, 0, 1)
    assert store.retype("things") == 0
    assert store.erase("things", "batch_id", ["b2"]) == 1  # a whole batch, as a lost version's rows are withdrawn
    assert (lookup("a"), lookup("d")) == (1, 0)


def test_connect_reads_every_table_and_pins_a_version_per_table(store: Warehouse) -> None:
    store.commit("things", "b1", rows(["a"]), partition="2026-11-21")
    store.commit("things", "b2", rows(["b"]), partition="2026-11-21")
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM things").fetchone() == (2,)
        assert con.execute("SELECT count(*) FROM keyed").fetchone() == (0,)
    with store.connect(version={"things": 1}) as con:
        assert con.execute("SELECT count(*) FROM things").fetchone() == (1,)


# --------------------------------------------------------------------------------- what the log holds

SECRET_ID = "ID-7Q4Z-SECRET"
SECRET_VALUE = 98765.4321
SECRET_COLOUR = "COLOUR-ULTRAVIOLET"


def occurrences(path: Path, needles: list[str]) -> list[str]:
    """The needles found in a file: in its raw bytes, and (for Parquet, which compresses) in its decoded values."""
    data = path.read_bytes()
    found = [n for n in needles if n.encode() in data]
    if path.suffix == ".parquet" or path.name.endswith(".checkpoint.parquet"):
        text = str(pq.read_table(path).to_pylist())
        found += [n for n in needles if n in text and n not in found]
    return found


def test_the_delta_log_never_holds_a_record_id_or_a_feature_value(store: Warehouse) -> None:
    """Appends, a keyed append, a compaction and its checkpoint: no file under any `_delta_log/` holds an id or a
    value (statistics are kept only for the configured column)."""
    for table in ("things", "keyed"):
        for n in range(3):
            store.commit(
                table,
                f"b{n}",
                rows([f"{SECRET_ID}-{n}", "plain"], value=SECRET_VALUE, colour=SECRET_COLOUR),
                partition="2026-11-21",
                read_version=store.version(table) if table == "keyed" else None,
            )
        compact(store, table, target_mb=64)  # writes a checkpoint too
    needles = [SECRET_ID, str(SECRET_VALUE), SECRET_COLOUR, "plain"]
    logs = [p for p in store.root.rglob("*") if p.is_file() and "_delta_log" in p.parts]
    assert any(p.name.endswith(".checkpoint.parquet") for p in logs)
    leaks = {str(p.relative_to(store.root)): found for p in logs if (found := occurrences(p, needles))}
    assert leaks == {}
    data = [p for p in store.root.rglob("*.parquet") if "_delta_log" not in p.parts]
    assert any(SECRET_ID in occurrences(p, [SECRET_ID]) for p in data)  # the search does find what is there


# --------------------------------------------------------------------------------- awkward locations


@pytest.mark.parametrize("folder", ["run [1]", "100%"])
def test_a_folder_name_delta_rs_cannot_write_under_is_refused_with_a_clear_error(tmp_path: Path, folder: str) -> None:
    """deltalake 1.6 panics under a folder holding '[' and misreads '%': refused before anything is written."""
    with pytest.raises(ValueError, match="choose a folder name without them"):
        open_store(tmp_path / folder / "wh")


@pytest.mark.parametrize(
    "folder",
    [
        pytest.param("owner's", id="quote"),
        pytest.param("plain", id="plain"),
        pytest.param("a warehouse", id="space"),
        pytest.param('say "hi"', id="double-quote"),
    ],
)
def test_a_warehouse_under_an_awkward_folder_name_commits_reads_and_catalogs(tmp_path: Path, folder: str) -> None:
    """Quotes, spaces and brackets in the folder names: commits, flow reads and the people's catalog all work."""
    root = tmp_path / folder / "wh"
    store = open_store(root)
    store.init()
    assert store.commit("things", "b1", rows(["a", "b"]), partition="2026-11-21")
    assert store.commit("keyed", "k1", rows(["a"]), partition="2026-11-21", read_version=0)
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM things").fetchone() == (2,)
    for path in store.files("things"):
        assert Path(path).is_file(), path
    catalog = build_catalog(store)
    with duckdb.connect(str(catalog), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM things").fetchone() == (2,)
        assert con.execute("SELECT count(*) FROM keyed").fetchone() == (1,)


# ------------------------------------------------------------------------------------ schema changes

GROWN = pa.schema([*SCHEMA, ("note", pa.string()), ("weights", pa.list_(pa.float32()))])


def test_a_column_added_to_the_layout_is_added_at_init_and_older_rows_read_it_as_null(store: Warehouse) -> None:
    assert store.commit("things", "old", rows(["a"]), partition="2026-11-21")
    grown = Warehouse(store.root, [Table(name="things", partition_by="day", schema=GROWN, stats_columns=("at",))])

    grown.init()
    grown.init()  # a second open changes nothing

    assert [entry["operation"] for entry in grown.delta("things").history()].count("ADD COLUMN") == 1
    new = (
        rows(["b"])
        .append_column("note", pa.array(["why"]))
        .append_column("weights", pa.array([[0.5, 0.25]], pa.list_(pa.float32())))
    )
    assert grown.commit("things", "new", new, partition="2026-11-21")
    got = {r["id"]: (r["note"], r["weights"]) for r in grown.dataset("things").to_table().to_pylist()}
    assert got == {"a": (None, None), "b": ("why", [0.5, 0.25])}


def test_a_streaming_session_reads_the_same_rows_as_a_plain_one_at_each_version(store: Warehouse) -> None:
    """`connect(streaming=True)` binds local tables as views over their files (DuckDB's Parquet reader): the
    same rows and types, the pinned version, and files written before a column was added read it as null."""
    assert store.commit("things", "old", rows(["a"]), partition="2026-11-21")
    grown = Warehouse(store.root, [Table(name="things", partition_by="day", schema=GROWN, stats_columns=("at",))])
    grown.init()
    new = (
        rows(["b", "c"], value=2.5)
        .append_column("note", pa.array(["why", None]))
        .append_column("weights", pa.array([[0.5, 0.25], None], pa.list_(pa.float32())))
    )
    assert grown.commit("things", "new", new, partition="2026-11-22")
    query = "SELECT * FROM things ORDER BY id"

    def read(version: int | None, streaming: bool) -> pa.Table:
        pinned = None if version is None else {"things": version}
        with grown.connect(version=pinned, tables=["things"], streaming=streaming) as con:
            return con.sql(query).to_arrow_table()

    for version in (None, 1, grown.version("things")):
        plain, streamed = read(version, False), read(version, True)
        assert streamed.schema == plain.schema and streamed.to_pylist() == plain.to_pylist()
    assert read(None, True).column("note").to_pylist() == [None, "why", None]
    assert read(1, True).column("id").to_pylist() == ["a"]


def test_optional_columns_left_out_of_a_commit_are_stored_as_nulls_and_others_are_still_required(
    tmp_path: Path,
) -> None:
    table = Table(name="things", partition_by="day", schema=GROWN, optional=("note", "weights"))
    store = Warehouse(tmp_path / "wh", [table])
    store.init()

    assert store.commit("things", "b1", rows(["a"]), partition="2026-11-21")

    assert store.dataset("things").to_table(columns=["note", "weights"]).to_pylist() == [
        {"note": None, "weights": None}
    ]
    with pytest.raises(CommitError, match=r"lacks columns \['colour'\]"):
        store.commit("things", "b2", rows(["b"]).drop_columns(["colour"]), partition="2026-11-21")


def test_a_stream_written_as_files_replaces_the_table_in_one_commit_with_its_rows_as_given(store: Warehouse) -> None:
    """How `predictions_current` is rebuilt: a stream of rows (batch ids and days kept as they are, unlike a
    batch's commit) written as files of bounded size, then made the whole table in one commit."""
    from deltalake import CommitProperties

    store.commit("things", "old", rows(["gone-1", "gone-2"]), partition="2026-11-20")
    kept = [
        rows([f"r{i}-{j}" for j in range(3)])
        .append_column("day", pa.array(["d"] * 3))
        .append_column("batch_id", pa.array([f"b{i}"] * 3))
        for i in range(5)
    ]
    batches = (batch for table in kept for batch in table.cast(SCHEMA).to_batches())
    actions = store.stream_files("things", batches, prefix="rebuild", file_rows=6)
    assert [json.loads(a.stats)["numRecords"] for a in actions] == [6, 6, 3]  # a file closes once it has 6 rows
    assert ids_of(store, "things") == ["gone-1", "gone-2"]  # written, not committed: invisible
    before = store.version("things")
    store.replace_files("things", actions, CommitProperties(), read_version=before)
    assert store.version("things") == before + 1
    assert ids_of(store, "things") == sorted(f"r{i}-{j}" for i in range(5) for j in range(3))
    table = store.dataset("things").to_table()
    assert set(table.column("batch_id").to_pylist()) == {f"b{i}" for i in range(5)} and set(
        table["day"].to_pylist()
    ) == {"d"}
    assert ids_of(store, "things", before) == ["gone-1", "gone-2"]  # the old version still reads as it was


def test_replacing_a_table_conflicts_with_a_writer_of_the_same_mark_that_committed_since_it_was_read(
    store: Warehouse,
) -> None:
    """Two refreshes of `predictions_current` at once: both record the `current` watermark, so the log lets
    one land and makes the other start again (an overwrite alone would keep the other's new files)."""
    from deltalake import CommitProperties, Transaction
    from deltalake.exceptions import CommitFailedError

    read = store.version("things")
    open_store(store.root).commit("things", "meanwhile", rows(["new"]), partition="2026-11-20", marks=[("mark", 5)])
    actions = store.stream_files("things", iter([]), prefix="empty", file_rows=6)
    assert actions == []
    with pytest.raises(CommitFailedError):
        store.replace_files(
            "things", actions, CommitProperties(app_transactions=[Transaction("mark", 6)]), read_version=read
        )
    assert ids_of(store, "things") == ["new"]
    store.replace_files(
        "things", actions, CommitProperties(app_transactions=[Transaction("mark", 6)]), read_version=read + 1
    )
    assert ids_of(store, "things") == [] and store.watermark("things", "mark") == 6
