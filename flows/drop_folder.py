"""Drop folders: the files waiting in one, and moving each aside once its batches are committed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from flows.runtime import utc_now
from pipeline.validate import BAD_COLUMNS


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


def refusal(reason: str) -> pd.DataFrame:
    """The one row that stands for a file refused as a whole."""
    row = dict.fromkeys(BAD_COLUMNS)
    row.update({"column_name": "(file)", "rule": "readable", "reason": f"file refused: {reason}"})
    return pd.DataFrame([row])
