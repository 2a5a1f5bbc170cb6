"""The Dask engine (`[compute] engine = "dask"`): `score`'s units of work on a Dask cluster, and a backfill's
(`score_on_cluster(..., since=...)`: the units of warehouse/backfill.py, committed with its marks); the blocks
of a large file `ingest` validates (`blocks_on_cluster`, committed by flows/ingest.py); and the per-column
drift statistics of `monitor` (`statistics_on_cluster`).

Why plain Dask futures inside one Prefect task, and not one Prefect task per unit on a DaskTaskRunner
(prefect-dask): measured here (2 cores, loaded, LocalCluster of 2 worker processes, 16 units of 25,000
rows, warm): plain futures inside one Prefect task 16.0 s, the same futures without Prefect 15.9 s,
Prefect tasks on a DaskTaskRunner 47.7 s (each worker process opens its own Prefect client and reports
every state to the API, which also needs a real Prefect server), a loop in one process 12.4 s. And
PrefectHQ/prefect#15442: with the task runner, a lost worker makes completed tasks run again. So the
flow shows one task, and the units it ran (rows, attempts, lost workers, worker, seconds) as a table
artifact and log lines.

The commit protocol keeps every rule of the local engine (warehouse/scoring.py): a worker (flows/unit_work.py)
reads its unit by reference (warehouse/units.py), scores it, and writes its predictions as a data file no snapshot
refers to yet; it returns that file's add action (a path, a size, statistics: never rows). The flow
commits each unit's file as one Delta commit, in plan order, with the batch id, watermark and read version
a local run would use. So a worker killed mid-unit leaves only an unreferenced file (vacuum removes it)
and the unit is submitted again; a unit that runs twice writes two files and at most one is committed
(the batch id is in the log once); a killed flow leaves whole units only, and the next run goes on from
the watermark; a run racing another for the same model loses in the log and plans again.

Workers need what the flow needs: the warehouse (a shared S3 root, or the same local path on one machine),
the models folder at the same path, and the AWS_* variables for S3.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.ingest_work import BlockResult, IngestJob, validate_block
from flows.runtime import artifact_path
from flows.unit_work import ScoreJob, UnitResult, run_unit
from pipeline.config import Compute, Settings
from pipeline.drift import ColumnStatistics, column_statistics
from pipeline.model import ScoringModel
from warehouse import scoring, units
from warehouse.backfill import backfill_units, plan_backfill
from warehouse.registry import registered
from warehouse.store import Conflict, Warehouse
from warehouse.units import UnitRef

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client, Future


CONNECT_TIMEOUT = "30s"  # how long a configured scheduler may take to answer


class ClusterError(RuntimeError):
    """The cluster could not be reached, or a unit failed on every attempt."""


@dataclass
class ClusterScore:
    """What a run on the cluster did, unit by unit (the table artifact's rows)."""

    scored: int = 0
    positives: int = 0
    units: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ the driver


@contextmanager
def dask_client(compute: Compute) -> Iterator[Client]:
    """A client of the configured scheduler, or of a LocalCluster of `workers` processes for this run."""
    from distributed import Client, LocalCluster

    if compute.address:
        try:
            client = Client(compute.address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as error:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {compute.address} ({error}): start it "
                "(docker compose up dask-scheduler dask-worker) or fix compute.address"
            ) from None
        with client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=compute.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@task(cache_policy=NO_CACHE, task_run_name="score units on dask")
def score_on_cluster(
    store: Warehouse, settings: Settings, model: ScoringModel, scored_at: datetime, since: datetime | None = None
) -> ClusterScore:
    """Plan the units, run them on the cluster, commit each in plan order; plan again after a lost race. With
    `since`, a backfill of `model` (warehouse/backfill.py) instead of its scoring."""
    logger = get_run_logger()
    with store.connect(tables=["models"]) as con:
        entry = registered(con, model.version)
    if entry is None:
        raise ClusterError(f"{model.version} is not in the registry: run `scorehouse train` first")
    job = ScoreJob(
        settings=settings,
        model_version=model.version,
        model_folder=str(artifact_path(settings, entry.artifact_dir)),
        sha256=tuple(sorted(entry.sha256.items())),
        scored_at=scored_at,
    )
    with dask_client(settings.compute) as client:
        workers = len(client.scheduler_info().get("workers", {}))
        logger.info(
            "scoring with %s on the Dask cluster at %s (%d workers)", model.version, client.scheduler.address, workers
        )
        outcome = ClusterScore()  # units committed before a lost race count too
        for _ in range(scoring.PLAN_ATTEMPTS):
            if since is not None:  # each attempt plans from the log as it is then
                job = replace(job, backfill=plan_backfill(store, model.version, since))
            try:
                run_plan(client, store, job, settings.scoring.chunk_rows, settings.compute.unit_attempts, outcome)
                break
            except Conflict:
                logger.info(
                    "another run scored with %s at the same time; planning again from its watermark once it is done",
                    model.version,
                )
                scoring.wait_until_quiet(store)
        else:
            raise RuntimeError(
                f"scoring with {model.version} lost {scoring.PLAN_ATTEMPTS} races with other runs; run again"
            )
    publish_units(outcome, model.version, backfill=since is not None)
    return outcome


def run_plan(
    client: Client, store: Warehouse, job: ScoreJob, chunk_rows: int, attempts: int, outcome: ClusterScore
) -> None:
    """Submit every unit of a fresh plan, and commit the results in plan order as they arrive: unit n is
    committed from the snapshot unit n-1 created (the first from the plan's), as the local engine does."""
    from distributed import as_completed

    logger = get_run_logger()
    if job.backfill is not None:
        base = job.backfill.predictions_version
        planned = backfill_units(store, job.backfill, chunk_rows)
    else:
        base = store.version("predictions")
        planned = units.plan_units(store, job.model_version, chunk_rows)
    plan = {unit.number: unit for unit in planned}
    tries = dict.fromkeys(plan, 1)
    running = {client.submit(run_unit, job, unit, pure=False): unit for unit in plan.values()}
    waiting = as_completed(list(running))
    arrived: dict[int, UnitResult] = {}
    lost: dict[int, int] = {}
    committed = 0
    try:
        for future in waiting:
            unit = running.pop(future)
            if future.status != "finished":
                retry = resubmit(client, future, unit, tries, attempts, job)
                running[retry] = unit
                waiting.add(retry)
                continue
            arrived[unit.number] = future.result()
            lost[unit.number] = lost_workers(client, [future.key])
            while committed + 1 in arrived:
                committed += 1
                result = arrived.pop(committed)
                if job.backfill is not None and not result.rows:
                    continue  # a backfill's empty unit has no watermark to record: nothing to commit
                base = commit_unit(store, job, plan[result.number], result, base)
                outcome.scored += result.rows
                outcome.positives += result.positives
                outcome.units.append(
                    unit_row(plan[result.number], result, tries[result.number], lost[result.number], base)
                )
                logger.info(
                    "unit %d/%d: %d rows on %s in %.1f s (attempt %d), committed as predictions v%d",
                    result.number,
                    len(plan),
                    result.rows,
                    result.worker,
                    result.seconds,
                    tries[result.number],
                    base,
                )
    finally:
        client.cancel(list(running))  # a lost race or a failure: nothing more of this plan is committed


def resubmit(
    client: Client, failed: Future, unit: UnitRef, tries: dict[int, int], attempts: int, job: ScoreJob
) -> Future:
    """Submit a failed unit again, or stop the run once it has failed `attempts` times."""
    error = failed.exception() if failed.status == "error" else failed.status
    if tries[unit.number] >= attempts:
        raise ClusterError(
            f"unit {unit.number} ({unit.kind}, {unit.planned_rows} rows) failed {tries[unit.number]} times, last: "
            f"{error!r}; what was committed stays, and the next run goes on from there"
        )
    get_run_logger().warning("unit %d failed (%r); submitting it again", unit.number, error)
    tries[unit.number] += 1
    return client.submit(run_unit, job, unit, pure=False)


def commit_unit(store: Warehouse, job: ScoreJob, unit: UnitRef, result: UnitResult, base: int) -> int:
    """Commit a unit's file as one exactly-once Delta commit; returns the version it created."""
    marks = (
        job.backfill.marks if job.backfill is not None else [(scoring.watermark_app(job.model_version), unit.watermark)]
    )
    landed = store.commit_files("predictions", result.batch, result.actions, marks=marks, read_version=base)
    if not landed:  # another run committed this very unit: plan again from what it left
        raise Conflict(f"unit {unit.number} of {job.model_version} was committed by another run")
    return store.committed_version("predictions")


# ------------------------------------------------------------------------------------------ ingest's blocks


@dataclass(frozen=True)
class BlockRun:
    """How one block of a file went on the cluster: its result (None: the worker could not read the block,
    and the flow reads it itself to say why), how many times it was submitted, and workers lost under it."""

    number: int
    result: BlockResult | None
    attempts: int
    lost: int


def blocks_on_cluster(client: Client, job: IngestJob, numbers: Sequence[int], attempts: int) -> Iterator[BlockRun]:
    """Validate a file's blocks on the cluster, all submitted at once, and yield them in file order (the
    order the flow commits them in). A failed or lost block is submitted again, up to `attempts` times."""
    from distributed import wait

    from pipeline.validate import UnreadableFile

    running = {number: client.submit(validate_block, job, number, pure=False) for number in numbers}
    try:
        for number in numbers:
            tries = 1
            while True:
                future = running[number]
                wait([future])
                if future.status == "finished":
                    yield BlockRun(number, future.result(), tries, lost_workers(client, [future.key]))
                    break
                error = future.exception() if future.status == "error" else future.status
                if isinstance(error, UnreadableFile):
                    yield BlockRun(number, None, tries, 0)
                    break
                if tries >= attempts:
                    raise ClusterError(
                        f"block {number} of {job.name} failed {tries} times on the cluster, last: {error!r}; "
                        "the blocks before it are stored, and the next run goes on from there"
                    )
                get_run_logger().warning("block %d of %s failed (%r); submitting it again", number, job.name, error)
                tries += 1
                running[number] = client.submit(validate_block, job, number, pure=False)
    finally:
        client.cancel(list(running.values()))  # a failure or a refused file: nothing more of it is committed


# ------------------------------------------------------------------------------------------ monitor's statistics

# Columns whose drift statistics one task computes: a column of a 20,000-row drift sample costs tens of
# milliseconds, so a task per column would cost more in scheduling than it computes.
COLUMNS_PER_TASK = 8


def statistics_on_cluster(client: Client, attempts: int) -> ColumnStatistics:
    """`pipeline.drift.column_statistics` on the cluster: the two frames' columns are scattered to the workers
    once per call, each task computes a group of columns from those references, and the results come back
    in column order. The numbers are the local ones: a column's statistics depend on that column only."""

    def run(
        reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[tuple[str, bool]]
    ) -> list[tuple[float, float]]:
        names = [name for name, _ in columns]
        held_reference, held_current = client.scatter([reference[names], current[names]])
        groups = [list(columns[i : i + COLUMNS_PER_TASK]) for i in range(0, len(columns), COLUMNS_PER_TASK)]
        futures = [
            client.submit(column_statistics, held_reference, held_current, group, pure=False, retries=attempts - 1)
            for group in groups
        ]
        return [pair for group in client.gather(futures) for pair in group]

    return run


def lost_workers(client: Client, keys: Sequence[object]) -> int:
    """How many workers died while running these tasks (the scheduler ran them again elsewhere)."""
    counts: dict[Any, int] = client.run_on_scheduler(_suspicious, keys=list(keys))
    return sum(counts.values())


def _suspicious(dask_scheduler: Any, keys: list[object]) -> dict[Any, int]:
    return {key: int(dask_scheduler.tasks[key].suspicious) for key in keys if key in dask_scheduler.tasks}


def unit_row(unit: UnitRef, result: UnitResult, tries: int, lost: int, version: int) -> dict[str, Any]:
    return {
        "unit": unit.number,
        "source": unit.kind,
        "rows": result.rows,
        "attempts": tries,
        "workers lost": lost,
        "worker": result.worker,
        "seconds": round(result.seconds, 2),
        "predictions version": version,
    }


def publish_units(outcome: ClusterScore, model_version: str, *, backfill: bool = False) -> None:
    """The units of the run, for the Prefect UI (a table artifact of the score or backfill flow run)."""
    retried = sum(1 for row in outcome.units if row["attempts"] > 1 or row["workers lost"])
    verb = "backfill" if backfill else "score"
    create_table_artifact(
        key=f"{verb}-units",
        table=outcome.units or [{"unit": 0, "source": "nothing to score", "rows": 0}],
        description=f"{verb} {model_version} on Dask: {len(outcome.units)} unit(s), {outcome.scored} rows, "
        f"{retried} retried",
    )
