"""The Dask engine against the local one: the score flow on the same records, and the bare Dask chain.

- `dask_over_local`: the score flow with `[compute] engine = "dask"` on a standing LocalCluster of 2 worker
  processes (`address` set, as a deployment runs it: the cluster outlives the runs) over the same flow with
  the local engine, both with the config's explanations (the default). On one 2-core machine it cannot be
  faster; it says what the engine costs. `dask_over_local_cold`: the same with `address` empty, so the run
  starts its own LocalCluster and the workers' start-up is counted.
- `ingest_dask_over_local`: the ingest flow on the same Parquet file, validated in the flow over on the standing
  cluster.
- `monitor_dask_over_local`: the monitor flow with its per-column drift statistics on the standing cluster over
  local.
- `bare_dask`: the same units (the same plan, the same worker function, the same in-order commits), on the
  standing LocalCluster, without Prefect: the engine's own limit.
Rows per unit and units per second let a reader extrapolate to N machines.

python -m bench.dask_bench [--rows N]  runs it alone and merges its figures into results.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config import load_settings


def forget_predictions(config: Path) -> None:
    """Remove the predictions tables so that the next score run scores every record again."""
    for table in ("predictions", "predictions_current"):
        shutil.rmtree(config.parent / "data" / "warehouse" / table, ignore_errors=True)


@contextmanager
def standing_cluster(workers: int = 2) -> Iterator[str]:
    """A LocalCluster of `workers` processes that outlives the runs measured on it, as a deployed cluster
    does (docker-compose's `dask-scheduler`), its workers having imported the engine's code; its address."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        for module in ("flows.unit_work", "flows.ingest_work"):
            client.run(importlib.import_module, module)
        yield str(cluster.scheduler_address)


def bare_dask(config: Path, address: str) -> dict[str, float]:
    """Seconds, units and rows of scoring every pending record with the engine's units, without Prefect, on the
    cluster at `address`."""
    from distributed import Client, as_completed

    from flows.runtime import artifact_path, open_store
    from flows.unit_work import ScoreJob, run_unit
    from warehouse import scoring, units
    from warehouse.registry import champion

    settings = load_settings(config)
    store = open_store(settings)
    with store.connect() as con:
        entry = champion(con)
    assert entry is not None, "train first"
    job = ScoreJob(
        settings=settings,
        model_version=entry.version,
        model_folder=str(artifact_path(settings, entry.artifact_dir)),
        sha256=tuple(sorted(entry.sha256.items())),
        scored_at=datetime.now(UTC),
    )
    with Client(address) as client:
        start = time.perf_counter()
        base = store.version("predictions")
        plan = {u.number: u for u in units.plan_units(store, job.model_version, settings.scoring.chunk_rows)}
        futures = [client.submit(run_unit, job, unit, pure=False) for unit in plan.values()]
        arrived: dict[int, Any] = {}
        committed = rows = 0
        for future in as_completed(futures):
            result = future.result()
            arrived[result.number] = result
            while committed + 1 in arrived:
                committed += 1
                done = arrived.pop(committed)
                marks = [(scoring.watermark_app(job.model_version), plan[committed].watermark)]
                store.commit_files("predictions", done.batch, done.actions, marks=marks, read_version=base)
                base = store.committed_version("predictions")
                rows += done.rows
        seconds = time.perf_counter() - start
    scoring.refresh_current(store, job.model_version)  # not timed: leaves a warehouse whose tables agree
    return {"seconds": seconds, "units": len(plan), "rows": rows}


DASK = {"SCOREHOUSE_COMPUTE__ENGINE": "dask", "SCOREHOUSE_COMPUTE__WORKERS": "2"}


def forget_monitoring(config: Path) -> None:
    """Remove the monitoring tables so that the next monitor run reports on the same window again."""
    for table in ("monitoring", "alert_episodes"):
        shutil.rmtree(config.parent / "data" / "warehouse" / table, ignore_errors=True)


def ingest_figures(source: Path, work: Path, step: Any, address: str) -> dict[str, float]:
    """The ingest flow on the same Parquet file into two new projects, validated in the flow and on the
    cluster at `address`; both must store and quarantine the same numbers of rows."""
    from bench.run import drop_file, make_config
    from flows.runtime import open_store

    seconds: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    for engine, env in (("local", {}), ("dask", {**DASK, "SCOREHOUSE_COMPUTE__ADDRESS": address})):
        config = make_config(work / f"ingest-{engine}")
        drop_file(source, config)
        seconds[engine] = step("ingest", config, env)["seconds"]["ingest"]
        store = open_store(load_settings(config))
        counts[engine] = {table: store.dataset(table).count_rows() for table in ("records", "quarantine")}
    assert counts["dask"] == counts["local"], f"the engines stored different rows: {counts}"
    return {
        "ingest_local_s": seconds["local"],
        "ingest_dask_s": seconds["dask"],
        "ingest_dask_over_local": seconds["local"] / seconds["dask"],
    }


def measure(
    config: Path, source: Path, step: Any, rows: int, local_score_s: float, local_monitor_s: float
) -> dict[str, float]:
    """On `config`'s records (already ingested from `source` and scored by the local engine in
    `local_score_s`, with the config's explanations as here, and monitored in `local_monitor_s`): the dask
    score flow on a cluster it starts, then on a standing cluster the dask score flow, the bare Dask chain,
    the monitor flow and the ingest of `source` into new projects; returns the figures for results.json."""
    forget_predictions(config)
    cold_s = step("score", config, DASK)["seconds"]["score"]
    with standing_cluster() as address:
        there = {**DASK, "SCOREHOUSE_COMPUTE__ADDRESS": address}
        forget_predictions(config)
        dask_s = step("score", config, there)["seconds"]["score"]
        forget_predictions(config)
        bare = bare_dask(config, address)
        forget_monitoring(config)
        monitor_s = step("monitor", config, there)["seconds"]["monitor"]
        ingested = ingest_figures(source, config.parent.parent, step, address)
    unit_rows = load_settings(config).scoring.chunk_rows
    return {
        "dask_score_flow_s": dask_s,
        "local_score_flow_s": local_score_s,
        "dask_over_local": local_score_s / dask_s,
        "dask_score_flow_cold_s": cold_s,
        "dask_over_local_cold": local_score_s / cold_s,
        "dask_rows_per_unit": unit_rows,
        "dask_units": bare["units"],
        "dask_units_per_s": bare["units"] / dask_s,
        "bare_dask_s": bare["seconds"],
        "bare_dask_units_per_s": bare["units"] / bare["seconds"],
        "dask_flow_over_bare_dask": bare["seconds"] / dask_s,
        "dask_rows_scored": rows,
        "monitor_local_s": local_monitor_s,
        "monitor_dask_s": monitor_s,
        "monitor_dask_over_local": local_monitor_s / monitor_s,
        **ingested,
    }


def print_lines(r: dict[str, float]) -> None:
    print(
        f"{'dask score flow':<28}{r['dask_score_flow_s']:>20.1f} s  x{r['dask_over_local']:.2f} of local "
        f"({r['local_score_flow_s']:.1f} s; target >= 0.7), on a standing 2-worker LocalCluster"
    )
    print(
        f"{'dask score flow, cold':<28}{r['dask_score_flow_cold_s']:>20.1f} s  x{r['dask_over_local_cold']:.2f} "
        "of local, starting its own LocalCluster"
    )
    print(
        f"{'dask units':<28}{r['dask_units']:>20.0f}    {r['dask_rows_per_unit']:,.0f} rows/unit, "
        f"{r['dask_units_per_s']:.2f} units/s (flow), {r['bare_dask_units_per_s']:.2f} units/s (bare Dask)"
    )
    print(f"{'bare Dask chain':<28}{r['bare_dask_s']:>20.1f} s  flow x{r['dask_flow_over_bare_dask']:.2f} of bare Dask")
    print(
        f"{'dask ingest (1 file)':<28}{r['ingest_dask_s']:>20.1f} s  x{r['ingest_dask_over_local']:.2f} of local "
        f"({r['ingest_local_s']:.1f} s)"
    )
    print(
        f"{'dask monitor':<28}{r['monitor_dask_s']:>20.1f} s  x{r['monitor_dask_over_local']:.2f} of local "
        f"({r['monitor_local_s']:.1f} s; drift statistics on the cluster)"
    )


def main() -> None:
    from bench.generate import generate
    from bench.run import OUT, drop_file, make_config, step

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    work = OUT / "work-dask"
    shutil.rmtree(work, ignore_errors=True)
    source = generate(args.rows, work / "files" / "records.parquet", load_settings())
    config = make_config(work / "project")
    step("train", config)
    drop_file(source, config)
    step("ingest", config)
    local = step("score", config)
    local_monitor = step("monitor", config)
    figures = measure(config, source, step, args.rows, local["seconds"]["score"], local_monitor["seconds"]["monitor"])
    results_file = OUT / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results.update(figures)
    results_file.write_text(json.dumps(results, indent=2))
    print_lines(figures)


if __name__ == "__main__":
    os.environ.setdefault("DO_NOT_TRACK", "1")
    started = time.perf_counter()
    main()
    print(f"dask bench took {time.perf_counter() - started:.0f} s")
