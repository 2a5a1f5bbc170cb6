"""Drop folders: which entries may be taken, refusing what must never be read, and moving each aside.

The protocol (the README's "Your own data" says the same to the people who drop files):

- Only regular files with a visible name are taken, and only once their size and modification time
  have not changed for `drop.settle_seconds`: a file still being written is left for a later run.
  Writers should write `.NAME.partial` and rename it to NAME when it is whole; such names are left alone.
- Links, folders, FIFOs, sockets and devices are refused with a reason and moved (renamed, never opened
  or followed) into the rejected folder. A file the pipeline cannot open is refused the same way.
- Other names starting with `.` or `_` are never taken, and each run lists them as left in the folder.
- A file is moved aside only if it is still the file that was read (same inode, size and mtime); one
  that changed meanwhile stays, and the next run reads it again.

Every entry thus ends up in a report: taken, refused (with a row in the quarantine), or left with a reason.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flows.runtime import utc_now
from pipeline.validate import BAD_COLUMNS, Validated, open_regular
from warehouse.store import Warehouse, batch_id

PARTIAL_SUFFIX = ".partial"
PLACEHOLDERS = frozenset({".gitkeep"})  # the repository's own empty-folder markers
Logger = logging.Logger | logging.LoggerAdapter[Any]


@dataclass(frozen=True)
class Seen:
    """What identifies a file's content without reading it: which file, how long, when last written."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> Seen:
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


@dataclass(frozen=True)
class Entry:
    """A regular file ready to be taken, as it was when checked."""

    path: Path
    seen: Seen


@dataclass(frozen=True)
class Refused:
    """An entry that is never read: moved to the rejected folder with a row saying why."""

    path: Path
    seen: Seen
    reason: str


@dataclass(frozen=True)
class Left:
    """An entry left in the folder this run, and why."""

    name: str
    why: str


@dataclass(frozen=True)
class Arrivals:
    ready: list[Entry]
    refused: list[Refused]
    left: list[Left]


@dataclass(frozen=True)
class Tables:
    """Where a flow records its verdicts: the table of bad rows (and its time column) and the table whose
    batch marks an input as handled."""

    bad: str
    bad_time: str
    done: str


INGEST_TABLES = Tables(bad="quarantine", bad_time="quarantined_at", done="records")
FEEDBACK_TABLES = Tables(bad="feedback_rejects", bad_time="rejected_at", done="feedback")


def scan(folder: Path, settle_seconds: float, now: float | None = None) -> Arrivals:
    """Sort every entry of a drop folder into ready, refused and left, by name; nothing is followed or read."""
    ready: list[Entry] = []
    refused: list[Refused] = []
    left: list[Left] = []
    if not folder.is_dir():
        return Arrivals(ready, refused, left)
    clock = time.time() if now is None else now
    for path in sorted(folder.iterdir()):
        if path.name in PLACEHOLDERS:
            continue
        try:
            status = os.lstat(path)
        except FileNotFoundError:  # gone since the listing (a writer renaming its .partial file)
            continue
        verdict = _verdict(path, status, settle_seconds, clock)
        if isinstance(verdict, Entry):
            ready.append(verdict)
        elif isinstance(verdict, Refused):
            refused.append(verdict)
        else:
            left.append(verdict)
    return Arrivals(ready, refused, left)


def _verdict(path: Path, status: os.stat_result, settle_seconds: float, clock: float) -> Entry | Refused | Left:
    name, mode, seen = path.name, status.st_mode, Seen.of(status)
    if name.startswith((".", "_")):
        if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
            return Left(name, "being written (a .NAME.partial file): taken once it is renamed to NAME")
        return Left(name, "names starting with '.' or '_' are never taken: rename it without that first character")
    if stat.S_ISLNK(mode):
        return Refused(path, seen, "a symbolic link: links are never followed; drop the file itself")
    if stat.S_ISDIR(mode):
        return Refused(path, seen, "a folder: sub-folders are not read; drop its files into the folder itself")
    if not stat.S_ISREG(mode):
        return Refused(path, seen, f"not a regular file (a {_kind(mode)}): only regular files are read")
    age = clock - status.st_mtime
    if age < settle_seconds:
        return Left(
            name, f"still settling: written {max(age, 0):.0f} s ago, taken once unchanged for {settle_seconds:g} s"
        )
    problem = _unopenable(path, seen)
    if problem:
        return Refused(path, seen, problem)
    return Entry(path, seen)


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device")):
        if test(mode):
            return kind
    return "block device" if stat.S_ISBLK(mode) else "special file"


def _unopenable(path: Path, seen: Seen) -> str | None:
    """Why the file cannot be read by this process, or None; opening it is the only reliable test."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        return (
            f"cannot be opened ({error.strerror or error}): make it readable by the pipeline's user and drop it again"
        )
    os.close(fd)
    return None


def file_digest(entry: Entry) -> str:
    """sha256 of the file's content, read through a handle that never follows a link."""
    digest = hashlib.sha256()
    with open_regular(entry.path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unchanged(entry: Entry, path: Path | None = None) -> bool:
    """Whether the file (at `path`, by default where it was seen) is still the one that was checked."""
    try:
        return Seen.of(os.lstat(path or entry.path)) == entry.seen
    except FileNotFoundError:
        return False


def put_aside(entry: Entry, destination: Path, batch: str, logger: Logger) -> str | None:
    """Move a handled file into `destination/<today>/` unless it changed since it was checked.

    Returns None when moved, else why it stays in the drop folder. A file written to after the check is
    moved back if it changed in the instant of the move: its new content is read by the next run.
    """
    if not unchanged(entry):
        why = "changed while it was being read: left in place, the next run reads it again"
        logger.warning("%s %s", entry.path.name, why)
        return why
    target = move_aside(entry.path, destination, batch)
    if not unchanged(entry, target):
        if not os.path.lexists(entry.path):
            os.replace(target, entry.path)
        why = "changed while it was being moved: left in place, the next run reads it again"
        logger.warning("%s %s", entry.path.name, why)
        return why
    return None


def refuse(
    store: Warehouse,
    tables: Tables,
    refused: Refused,
    destination: Path,
    logger: Logger,
) -> str:
    """Record why an entry is refused (one row, no content read) and rename it into `destination/<today>/`.

    The batch id comes from the entry's name and identity, so a run killed between the commit and the
    move commits nothing twice. Returns the batch id.
    """
    seen = refused.seen
    batch = batch_id(tables.done, "refused entry", refused.path.name, seen.device, seen.inode, seen.mtime_ns)
    now = pd.Timestamp(utc_now())
    day = now.date().isoformat()
    rows = bad_rows_table(refusal(refused.reason), refused.path.name, tables.bad_time, now)
    store.commit(tables.bad, batch, rows, partition=day)
    store.commit(tables.done, batch, store.table(tables.done).schema.empty_table(), partition=day)
    logger.warning("%s refused: %s", refused.path.name, refused.reason)
    folder = destination / utc_now().date().isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, refused.path.name, batch)
    try:
        os.rename(refused.path, target)  # renames a link or a FIFO itself; never opens or copies it
    except OSError as error:
        logger.warning("%s could not be moved to %s (%s); it stays", refused.path.name, folder, error.strerror)
    return batch


def bad_rows_table(bad: pd.DataFrame, name: str, time_column: str, now: pd.Timestamp) -> pa.Table:
    frame = bad[BAD_COLUMNS].assign(source_file=name, **{time_column: now})
    frame["row_number"] = frame["row_number"].astype("Int64")
    return pa.Table.from_pandas(frame, preserve_index=False)


def pending_files(folder: Path) -> list[Path]:
    """Regular files with visible names waiting in a drop folder, by name (no settling, no refusals)."""
    return [entry.path for entry in scan(folder, settle_seconds=0).ready]


def _free_name(folder: Path, name: str, batch: str) -> Path:
    target = folder / name
    if os.path.lexists(target):
        path = Path(name)
        target = folder / f"{path.stem}.{batch}{path.suffix}"
    return target


def move_aside(path: Path, destination: Path, batch: str) -> Path:
    """Move a handled file into `destination/<today>/`, keeping its name unless that is taken."""
    folder = destination / utc_now().date().isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, path.name, batch)
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


def file_note(rule: str, reason: str) -> pd.DataFrame:
    """The one row that records something about a whole file that is not a refusal (e.g. it had no rows)."""
    row = dict.fromkeys(BAD_COLUMNS)
    row.update({"column_name": "(file)", "rule": rule, "reason": reason})
    return pd.DataFrame([row])
