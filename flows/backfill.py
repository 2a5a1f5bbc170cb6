"""`scorehouse score --version vN --since DATE`: score stored records with a version that is not champion.

A backfill scores the records ingested at or after DATE that vN has no prediction of, in units of
`scoring.chunk_rows`, here or on the Dask cluster (`[compute]`), and never promotes vN: the champion's
watermark does not move and `predictions_current` is not touched (a backfill's predictions count there only
once their version is champion). The rules of the work and of its commits are in warehouse/backfill.py.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.deployed import add_to_run_name
from flows.runtime import artifact_path, open_store, publish, run_name, settings_from, utc_now
from flows.unit_work import backfill_batch_id, explainer_for, predictions_table
from pipeline.artifacts import load_version
from pipeline.backfill import check_since, check_version
from pipeline.config import Settings
from pipeline.explain import Explainer
from pipeline.model import ScoringModel
from warehouse import scoring
from warehouse.backfill import BackfillPlan, backfill_rows, plan_backfill
from warehouse.registry import champion, registered, registered_versions
from warehouse.store import Conflict, Warehouse


@dataclass(frozen=True)
class BackfillReport:
    model_version: str
    since: datetime
    scored: int
    units: int
    engine: str


def load_backfill_version(store: Warehouse, settings: Settings, version: str) -> ScoringModel:
    """The version to backfill with, after the registry allowed it and its files matched their sha256."""
    with store.connect() as con:
        current = champion(con)
        versions = registered_versions(con)
        entry = registered(con, version)
    check_version(version, versions, current.version if current else None)
    assert entry is not None  # check_version refused an unregistered version
    return load_version(artifact_path(settings, entry.artifact_dir), entry.sha256)


@task(cache_policy=NO_CACHE, task_run_name="backfill unit {number}")
def backfill_unit(
    store: Warehouse,
    model: ScoringModel,
    rows: pa.Table,
    plan: BackfillPlan,
    number: int,
    base: int,
    explainer: Explainer | None = None,
) -> int:
    """Score (and explain) one unit and commit it as one exactly-once batch from snapshot `base`, with the
    plan's marks; returns the `predictions` version it created. A commit of the same version's scoring or
    of another backfill since `base` makes this raise `Conflict`."""
    now = utc_now()
    table = predictions_table(model, rows, now, explainer, backfill=True)
    landed = store.commit(
        "predictions",
        backfill_batch_id(model.version, rows.column("record_id")),
        table,
        partition=now.date().isoformat(),
        marks=list(plan.marks),
        read_version=base,
    )
    if not landed:  # another run committed these very records: plan again from what it left
        raise Conflict(f"unit {number} of the backfill of {model.version} was committed by another run")
    return store.committed_version("predictions")


def backfill_here(
    store: Warehouse, model: ScoringModel, since: datetime, chunk_rows: int, explainer: Explainer | None
) -> tuple[int, int]:
    """The local engine: plan, then score and commit unit after unit in this process; returns the rows scored
    and the units committed. A lost race plans again from what the other run left."""
    logger = get_run_logger()
    columns = ["record_id", *model.feature_names]
    scored = units = 0
    for _ in range(scoring.PLAN_ATTEMPTS):
        plan = plan_backfill(store, model.version, since)
        base = plan.predictions_version
        try:
            for rows in backfill_rows(store, plan, columns, chunk_rows):
                units += 1
                base = backfill_unit(store, model, rows, plan, units, base, explainer)
                scored += rows.num_rows
            return scored, units
        except Conflict:
            logger.info("another run scored with %s at the same time; planning the backfill again", model.version)
            scoring.wait_until_quiet(store)
    raise RuntimeError(f"the backfill of {model.version} lost {scoring.PLAN_ATTEMPTS} races with other runs; run again")


@flow(name="backfill", flow_run_name=run_name("backfill"))
def backfill(version: str, since: datetime, config: str | None = None) -> BackfillReport:
    """Score the records ingested at or after `since` with `version` (registered, not champion), without
    promoting it; a repeat adds nothing."""
    logger = get_run_logger()
    settings = settings_from(config)
    moment = check_since(since, utc_now())
    store = open_store(settings)
    model = load_backfill_version(store, settings, version)
    engine = settings.compute.engine
    if engine == "dask":
        from flows.engine import score_on_cluster  # imports distributed only when a cluster is asked for

        outcome = score_on_cluster(store, settings, model, utc_now(), since=moment)
        scored, units = outcome.scored, len(outcome.units)
    else:
        explainer = explainer_for(model, settings.explain)
        scored, units = backfill_here(store, model, moment, settings.scoring.chunk_rows, explainer)
    publish(store)
    report = BackfillReport(model_version=model.version, since=moment, scored=scored, units=units, engine=engine)
    logger.info(
        "backfill of %s since %s: %d records scored in %d unit(s) (%s engine); not promoted, current predictions "
        "unchanged",
        model.version,
        f"{moment:%Y-%m-%d %H:%M} UTC",
        scored,
        units,
        engine,
    )
    create_markdown_artifact(key="backfill-summary", markdown=summary(report), description=f"backfill {model.version}")
    add_to_run_name(model.version)
    return report


def summary(report: BackfillReport) -> str:
    """The run's summary for the Prefect UI: what was scored, with which version, from when."""
    return "\n".join(
        [
            "# Backfill",
            "",
            "| version | since (UTC) | rows scored | units | engine |",
            "|---|---|---|---|---|",
            f"| {md(report.model_version)} | {report.since:%Y-%m-%d %H:%M} | {report.scored} | {report.units} "
            f"| {md(report.engine)} |",
            "",
            f"Records ingested since then that {md(report.model_version)} had not scored. It was not promoted: "
            "the champion's scoring and `predictions_current` are unchanged.",
        ]
    )


def md(text: str) -> str:
    """Text as literal Markdown (no markup, no HTML, no table cell break)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", html.escape(text))
