"""The rules of a backfill: what `--since` and `--version` may be, which prediction is current, when the
scoring must compare instead of following the change feed, and that two backfills at once land once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from pipeline.backfill import BackfillError, check_since, check_version, parse_since
from tests.unit.test_maintenance import AT, DAY, FEATURES, rows_about
from warehouse import scoring
from warehouse.backfill import backfill_rows, backfill_units, plan_backfill
from warehouse.layout import open_warehouse
from warehouse.scoring import CURRENT_RULE, NO_COMPLETE_PASS, current_predictions, follows_change_feed
from warehouse.store import Conflict, Warehouse

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11-20T09:30Z", datetime(2026, 11, 20, 9, 30, tzinfo=UTC)),
        ("2026-11-20T10:30+01:00", datetime(2026, 11, 20, 9, 30, tzinfo=UTC)),
        ("2026-11-20 09:30", datetime(2026, 11, 20, 9, 30, tzinfo=UTC)),
    ],
)
def test_since_is_a_day_or_a_time_in_utc(text: str, expected: datetime) -> None:
    assert check_since(parse_since(text), NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "20/11/2026", "2026-13-01", ""])
def test_a_malformed_since_says_how_to_write_it(text: str) -> None:
    with pytest.raises(BackfillError, match=r"is not a date; write it like 2026-11-20") as caught:
        parse_since(text)
    assert "\n" not in str(caught.value)


def test_a_since_in_the_future_is_refused() -> None:
    with pytest.raises(BackfillError, match=r"2026-11-26 00:00 UTC is in the future .* give a past date"):
        check_since(parse_since("2026-11-26"), NOW)
    assert check_since(NOW, NOW) == NOW, "now itself is allowed (it scores what arrives at that instant)"


def test_only_a_registered_version_other_than_the_champion_is_backfilled() -> None:
    check_version("v2", ["v1", "v2"], champion="v1")
    with pytest.raises(BackfillError, match=r"'v9' is not a registered model version \(registered: v1, v2\)"):
        check_version("v9", ["v1", "v2"], champion="v1")
    with pytest.raises(BackfillError, match=r"v1 is the champion: `scorehouse score` scores"):
        check_version("v1", ["v1", "v2"], champion="v1")


@pytest.mark.parametrize(
    ("watermark", "backfilled", "follows"),
    [
        (None, None, False),  # never scored: compare
        (NO_COMPLETE_PASS, None, False),  # a full pass under way: compare
        (5, None, True),  # the usual cycle
        (5, 5, True),  # a backfill that reached no further than the watermark
        (5, 6, False),  # a backfill scored records after the watermark: compare once
        (NO_COMPLETE_PASS, 6, False),
    ],
)
def test_the_scoring_follows_the_change_feed_only_past_every_backfill(
    watermark: int | None, backfilled: int | None, follows: bool
) -> None:
    assert follows_change_feed(watermark, backfilled) is follows


def predictions(*rows: tuple[str, str, int, bool | None]) -> pa.Table:
    """(record, version, hour scored, backfill) each."""
    return pa.table(
        {
            "record_id": [r[0] for r in rows],
            "model_version": [r[1] for r in rows],
            "scored_at": pa.array([AT + timedelta(hours=r[2]) for r in rows], pa.timestamp("us", tz="UTC")),
            "backfill": pa.array([r[3] for r in rows], pa.bool_()),
            "batch_id": [f"{r[1]} at {r[2]}" for r in rows],  # a batch holds a record once
        }
    )


def current(rows: pa.Table, champion: str | None) -> dict[str, str]:
    con = duckdb.connect()
    con.register("p", rows)
    return {r["record_id"]: r["model_version"] for r in current_predictions(con, "p", champion).to_pylist()}


def test_the_current_prediction_is_the_latest_that_counts_and_a_backfill_counts_only_for_the_champion() -> None:
    rows = predictions(
        ("a", "v1", 0, None),  # the champion's
        ("a", "v3", 2, True),  # a backfill with v3, later
        ("b", "v1", 0, None),
        ("b", "v2", 1, None),  # v2 was champion later and scored b: latest wins
        ("b", "v3", 2, True),
        ("c", "v3", 2, True),  # only a backfill: no current prediction until v3 is champion
    )
    assert current(rows, champion="v1") == {"a": "v1", "b": "v2"}
    assert current(rows, champion=None) == {"a": "v1", "b": "v2"}
    assert current(rows, champion="v3") == {"a": "v3", "b": "v3", "c": "v3"}, "promoted: its backfill counts"
    assert "coalesce(backfill, false)" in CURRENT_RULE


@pytest.fixture
def store(tmp_path: Path) -> Warehouse:
    warehouse_ = open_warehouse(tmp_path / "wh", FEATURES, event_time=False)  # type: ignore[arg-type]
    warehouse_.init()
    return warehouse_


def add_records(store: Warehouse, ids: list[str], at: datetime) -> None:
    rows = rows_about(store, "records", ids)
    rows = rows.set_column(
        rows.schema.get_field_index("ingested_at"),
        "ingested_at",
        pa.array([at] * len(ids), rows.schema.field("ingested_at").type),
    )
    store.commit("records", f"r-{ids[0]}", rows, partition=DAY, read_version=store.version("records"))


def backfilled(store: Warehouse, ids: list[str], version: str) -> pa.Table:
    rows = rows_about(store, "predictions", ids)
    for name, value in (("model_version", version), ("backfill", True)):
        index = rows.schema.get_field_index(name)
        rows = rows.set_column(
            index, rows.schema.field(index), pa.array([value] * len(ids), rows.schema.field(index).type)
        )
    return rows


def test_two_backfills_at_once_conflict_and_the_second_plans_again_without_what_the_first_scored(
    store: Warehouse,
) -> None:
    add_records(store, ["old1"], AT - timedelta(days=3))
    add_records(store, ["new1", "new2"], AT)
    since = AT - timedelta(hours=1)
    first, second = plan_backfill(store, "v2", since), plan_backfill(store, "v2", since)
    todo = [
        r for chunk in backfill_rows(store, first, ["record_id"], 10) for r in chunk.column("record_id").to_pylist()
    ]
    assert todo == ["new1", "new2"], "only the records that arrived since"
    assert [u.planned_rows for u in backfill_units(store, first, 10)] == [2], (
        "the old file is left out by its statistics"
    )

    assert store.commit(
        "predictions",
        "b-1",
        backfilled(store, todo, "v2"),
        partition=DAY,
        marks=first.marks,
        read_version=first.predictions_version,
    )
    with pytest.raises(Conflict):
        store.commit(
            "predictions",
            "b-2",
            backfilled(store, todo, "v2"),
            partition=DAY,
            marks=second.marks,
            read_version=second.predictions_version,
        )

    again = plan_backfill(store, "v2", since)
    assert [len(chunk) for chunk in backfill_rows(store, again, ["record_id"], 10)] == []
    assert store.watermark("predictions", scoring.watermark_app("v2")) == NO_COMPLETE_PASS, "reads as no watermark"
    assert store.watermark("predictions", scoring.backfill_app("v2")) == store.version("records")


def test_a_backfill_leaves_the_watermark_of_a_former_champion_as_it_was_and_its_scoring_compares_once(
    store: Warehouse,
) -> None:
    add_records(store, ["a"], AT)
    store.commit(
        "predictions",
        "v1-a",
        rows_about(store, "predictions", ["a"]),
        partition=DAY,
        marks=[(scoring.watermark_app("v1"), store.version("records"))],
    )
    watermark = store.watermark("predictions", scoring.watermark_app("v1"))
    add_records(store, ["b"], AT)
    plan = plan_backfill(store, "v1", AT)
    store.commit(
        "predictions",
        "bf",
        backfilled(store, ["b"], "v1"),
        partition=DAY,
        marks=plan.marks,
        read_version=plan.predictions_version,
    )

    assert store.watermark("predictions", scoring.watermark_app("v1")) == watermark
    assert scoring.change_feed_after(store, "v1") is None, "b is after the watermark and scored: compare"
    units = list(scoring.pending_units(store, "v1", [], 10))
    assert [u.rows.num_rows for u in units] == [0] and units[-1].watermark == store.version("records")
