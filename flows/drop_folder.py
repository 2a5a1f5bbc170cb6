"""Drop folders: the files waiting in one, and moving each aside once its batches are committed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flows.runtime import utc_now
from pipeline.validate import BAD_COLUMNS, Validated
from warehouse.store import Warehouse, batch_id


def pending_files(folder: Path) -> list[Path]:
    """Files waiting in a drop folder, by name; hidden and partial files (`.x`, `_x`) are left alone."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_")))


def move_aside(path: Path, destination: Path, batch: str) -> Path:
    """Move a handled file into `destination/<today>/`, keeping its name unless that is taken."""
    folder = destination / utc_now().date().isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{batch}{path.suffix}"
    shutil.move(path, target)
    return target


def resume(store: Warehouse, refusals: str, batch: str, checked: Validated) -> tuple[Validated, str]:
    """The split to commit for `batch`, consistent with a killed earlier run of the same input.

    A run killed between the refusals batch and the good rows' batch left its refusals committed, and a
    run whose good rows lost a race with another writer (`Conflict`) checks them again after committing
    its refusals. Checked again now, a row may come out differently (the record its label needed has
    arrived since, or its id was stored by another file), so the earlier refusals stand: those rows are
    not stored again, and rows refused only now go into the next refusals batch of the block (`batch`,
    then `late 1`, `late 2`...). Returns the split and the refusals batch id to commit it under.
    """
    committed = refusal_batches(store, refusals, batch)
    if not committed:
        return checked, batch
    with store.connect() as con:
        rows = con.execute(
            f"SELECT row_number FROM {refusals} WHERE batch_id IN ({', '.join('?' for _ in committed)})", committed
        ).fetchall()
    earlier = pa.array([row[0] for row in rows if row[0] is not None], pa.int64())
    good = checked.good.filter(pc.invert(pc.is_in(checked.good.column("row_number"), value_set=earlier)))
    late = checked.bad[~checked.bad["row_number"].isin(earlier.to_pylist())].reset_index(drop=True)
    return Validated(good=good, bad=late), batch_id(batch, "late", len(committed))


def refusal_batches(store: Warehouse, refusals: str, batch: str) -> list[str]:
    """The refusals batches of one block already committed: `batch`, then its late ones, in order."""
    committed: list[str] = []
    candidate = batch
    while store.has_batch(refusals, candidate):
        committed.append(candidate)
        candidate = batch_id(batch, "late", len(committed))
    return committed


def refusal(reason: str) -> pd.DataFrame:
    """The one row that stands for a file refused as a whole."""
    row = dict.fromkeys(BAD_COLUMNS)
    row.update({"column_name": "(file)", "rule": "readable", "reason": f"file refused: {reason}"})
    return pd.DataFrame([row])
