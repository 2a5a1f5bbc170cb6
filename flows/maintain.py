"""`maintain`: compact, checkpoint and vacuum every table; prune run-time leftovers by their retentions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.runtime import open_store, publish, run_name, settings_from, utc_now
from pipeline.config import Settings
from warehouse.maintenance import Erasure, Retention, TableUpkeep, compact, retain, vacuum
from warehouse.maintenance import forget as erase
from warehouse.store import Warehouse


@dataclass(frozen=True)
class MaintainReport:
    tables: list[TableUpkeep]
    pruned: dict[str, int]  # folder -> entries removed


@task(cache_policy=NO_CACHE, task_run_name="compact {name}")
def compact_table(store: Warehouse, name: str, target_mb: int, retention: Retention) -> TableUpkeep:
    retain(store, name, retention)  # before the checkpoint, which applies it
    return compact(store, name, target_mb)


@task(cache_policy=NO_CACHE, task_run_name="vacuum {name}")
def vacuum_table(store: Warehouse, name: str, retention_hours: float) -> int:
    return vacuum(store, name, retention_hours)


def prune(folder: Path, older_than_days: float, now: float) -> int:
    """Remove the entries of `folder` (files, or day folders and their files) older than the retention."""
    if not folder.is_dir():
        return 0
    cutoff = now - older_than_days * 86400
    removed = 0
    for entry in folder.iterdir():
        if entry.name == ".gitkeep" or entry.is_symlink() or entry.lstat().st_mtime > cutoff:
            continue
        if entry.is_dir():
            removed += prune(entry, older_than_days, now)
            if not any(entry.iterdir()):
                entry.rmdir()
        else:
            entry.unlink()
            removed += 1
    return removed


@task(cache_policy=NO_CACHE)
def prune_leftovers(settings: Settings) -> dict[str, int]:
    """Handled drop files and old monitoring reports, each by its own retention."""
    now, keep = time.time(), settings.maintenance
    return {
        str(settings.processed_dir): prune(settings.processed_dir, keep.handled_files_days, now),
        str(settings.rejected_dir): prune(settings.rejected_dir, keep.handled_files_days, now),
        str(settings.reports_dir): _prune_reports(settings.reports_dir, keep.reports_days, now),
    }


def _prune_reports(folder: Path, older_than_days: float, now: float) -> int:
    """HTML reports older than the retention (the Evidently workspace keeps the latest
    `maintenance.workspace_reports` reports' snapshots: `monitor` prunes it as it adds to it)."""
    if not folder.is_dir():
        return 0
    cutoff = now - older_than_days * 86400
    old = [p for p in folder.glob("*.html") if p.lstat().st_mtime <= cutoff]
    for path in old:
        path.unlink()
    return len(old)


def _summary(report: MaintainReport, retention_days: float) -> str:
    lines = [
        "# Maintenance",
        f"Vacuum retention: {retention_days:g} days (time travel and old catalogs reach back this far).",
        "",
        "| table | files before | files after | compacted | rows retyped | vacuumed | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in report.tables:
        lines.append(
            f"| {t.table} | {t.files_before} | {t.files_after} | {t.compacted} | {t.retyped} | {t.vacuumed} "
            f"| {t.skipped or ''} |"
        )
    lines += ["", *(f"- pruned {n} entries of {folder}" for folder, n in report.pruned.items())]
    return "\n".join(lines)


@flow(name="maintain", flow_run_name=run_name("maintain"))
def maintain(config: str | None = None) -> MaintainReport:
    """Compact small files, checkpoint the logs, vacuum files older than the retention, prune leftovers.

    Safe while other flows write and while readers read: each step is one Delta commit (or a deletion of
    files no snapshot within the retention uses). The catalog is repointed at the compacted files before
    the old ones can be vacuumed.
    """
    logger = get_run_logger()
    settings = settings_from(config)
    store = open_store(settings)
    keep = settings.maintenance
    retention = Retention(files_hours=keep.retention_days * 24, batch_ids_hours=keep.batch_ids_days * 24)
    upkeep = [compact_table(store, name, keep.target_file_mb, retention) for name in store.tables]
    publish(store)
    for table in upkeep:
        table.vacuumed = vacuum_table(store, table.table, keep.retention_days * 24)
    pruned = prune_leftovers(settings)
    report = MaintainReport(tables=upkeep, pruned=pruned)
    logger.info(
        "compacted %d files into %d across %d tables; vacuumed %d; pruned %d leftovers",
        sum(t.files_before for t in upkeep),
        sum(t.files_after for t in upkeep),
        len(upkeep),
        sum(t.vacuumed for t in upkeep),
        sum(pruned.values()),
    )
    create_markdown_artifact(key="maintain-summary", markdown=_summary(report, keep.retention_days))
    return report


@flow(name="forget", flow_run_name=run_name("forget"))
def forget(ids: list[str], reason: str, actor: str, config: str | None = None) -> Erasure:
    """Erase these record ids from every table and record the erasure (without the ids in clear)."""
    settings = settings_from(config)
    store = open_store(settings)
    erasure = erase(store, ids, actor=actor, reason=reason, now=utc_now())
    publish(store)
    get_run_logger().info(
        "erasure %s by %s: %d id(s), rows removed per table: %s", erasure.erasure_id, actor, erasure.ids, erasure.rows
    )
    return erasure
