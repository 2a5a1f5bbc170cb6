"""A backfill: the stored records ingested since a moment, scored with a version that is not champion.

Exactly once, like every other write. The work is the records of one `records` snapshot ingested at or
after `since` that the version has no prediction of in one `predictions` snapshot (a comparison, not a
watermark: a backfill covers a period, not "everything after"); each unit's commit is made from the snapshot
the previous one created (the first from the plan's) and carries the marks below. So:

- a repeat, or a run after a kill, finds what was committed and scores only the rest;
- two backfills of one version at once, or a backfill and the version's own scoring (it was promoted
  meanwhile), conflict in the log on `score/<version>`: one lands, the other plans again;
- a unit committed twice (a Dask unit run again) is in the log once: its batch id derives from the version
  and the record ids (flows/score.py), never from the time of the run.

The marks never change what the version's scoring does: `score/<version>` is written with the value it had
(or "no complete pass" when it had none, which the scoring reads the same way), and `backfill/<version>`
records how far the backfill reached, which makes that version's scoring compare once instead of following
the change feed (warehouse/scoring.py `follows_change_feed`). The champion's watermark is another app id.

`since` applies to arrival (`ingested_at`), also when the dataset has an event time: arrival is stamped by
the pipeline in commit order and is never missing, the event time is the data's own claim.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from warehouse import scoring, units
from warehouse.store import Warehouse
from warehouse.units import UnitRef


@dataclass(frozen=True, kw_only=True)
class BackfillPlan:
    """What one attempt of a backfill reads and the marks each of its commits carries."""

    version: str
    since: datetime
    records_version: int  # the `records` snapshot whose records it scores
    predictions_version: int  # the `predictions` snapshot it compares with, and commits its first unit from
    marks: tuple[tuple[str, int], ...]


def backfill_marks(version: str, watermark: int | None, records_version: int) -> tuple[tuple[str, int], ...]:
    """The application transactions of a backfill's commits: the version's watermark unchanged (a claim that
    conflicts with its scoring; none reads as "no complete pass"), and how far the backfill reached."""
    unchanged = scoring.NO_COMPLETE_PASS if watermark is None else watermark
    return ((scoring.watermark_app(version), unchanged), (scoring.backfill_app(version), records_version))


def plan_backfill(store: Warehouse, version: str, since: datetime) -> BackfillPlan:
    """A backfill's plan from the log as it is now (read again after a lost race)."""
    predictions = store.version("predictions")
    watermark = store.delta("predictions", predictions).transaction_version(scoring.watermark_app(version))
    records = store.version("records")
    return BackfillPlan(
        version=version,
        since=since,
        records_version=records,
        predictions_version=predictions,
        marks=backfill_marks(version, watermark, records),
    )


def backfill_rows(store: Warehouse, plan: BackfillPlan, columns: Sequence[str], chunk_rows: int) -> Iterator[pa.Table]:
    """The local engine's units: the records to score, `chunk_rows` at a time, in record id order."""
    with store.connect(
        version={"records": plan.records_version, "predictions": plan.predictions_version},
        tables=["records", "predictions"],
    ) as con:
        selected = ", ".join(f'"{c}"' for c in columns)
        reader = con.sql(
            f"""
            SELECT {selected} FROM records
            ANTI JOIN (SELECT record_id FROM predictions WHERE model_version = $version) p USING (record_id)
            WHERE {units.ARRIVAL} >= $since
            ORDER BY record_id
            """,
            params={"version": plan.version, "since": plan.since},
        ).to_arrow_reader(chunk_rows)
        yield from scoring.rebatched(reader, chunk_rows)


def backfill_units(store: Warehouse, plan: BackfillPlan, chunk_rows: int) -> list[UnitRef]:
    """The Dask engine's units: groups of the snapshot's `records` files that may hold rows since `since`
    (by the log's statistics of arrival), each read with the same filter and comparison by its worker."""
    files = units.record_files(store, plan.records_version, since=plan.since)
    watermark = dict(plan.marks)[scoring.watermark_app(plan.version)]
    return [
        UnitRef(
            number=n,
            watermark=watermark,
            planned_rows=rows,
            files=tuple(paths),
            scored_at_version=plan.predictions_version,
            since=plan.since,
        )
        for n, (paths, rows) in enumerate(units.group_files(files, chunk_rows), start=1)
    ]
