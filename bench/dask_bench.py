"""The Dask engine against the local one: the score flow on the same records, and the bare Dask chain.

- `dask_over_local`: the score flow with `[compute] engine = "dask"` (a LocalCluster of 2 worker processes,
  started by the run, so its start-up is counted) over the same flow with the local engine, both with the
  config's explanations (the default). On one 2-core machine it cannot be faster; it says what the engine
  costs.
- `bare_dask`: the same units (the same plan, the same worker function, the same in-order commits), on a
  LocalCluster already running, without Prefect: the engine's own limit.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config import load_settings


def forget_predictions(config: Path) -> None:
    """Remove the predictions tables so that the next score run scores every record again."""
    for table in ("predictions", "predictions_current"):
        shutil.rmtree(config.parent / "data" / "warehouse" / table, ignore_errors=True)


def bare_dask(config: Path, workers: int = 2) -> dict[str, float]:
    """Seconds, units and rows of scoring every pending record with the engine's units, without Prefect."""
    from distributed import Client, LocalCluster, as_completed

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
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.run(importlib.import_module, "flows.unit_work")  # workers import the code before the clock starts
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


def measure(config: Path, step: Any, rows: int, local_score_s: float) -> dict[str, float]:
    """Run the dask score flow and the bare Dask chain on `config`'s records (already ingested and scored
    by the local engine in `local_score_s`, with the config's explanations as here); returns the figures for
    results.json."""
    forget_predictions(config)
    on_dask = step("score", config, {"SCOREHOUSE_COMPUTE__ENGINE": "dask", "SCOREHOUSE_COMPUTE__WORKERS": "2"})
    dask_s = on_dask["seconds"]["score"]
    forget_predictions(config)
    bare = bare_dask(config)
    unit_rows = load_settings(config).scoring.chunk_rows
    return {
        "dask_score_flow_s": dask_s,
        "local_score_flow_s": local_score_s,
        "dask_over_local": local_score_s / dask_s,
        "dask_rows_per_unit": unit_rows,
        "dask_units": bare["units"],
        "dask_units_per_s": bare["units"] / dask_s,
        "bare_dask_s": bare["seconds"],
        "bare_dask_units_per_s": bare["units"] / bare["seconds"],
        "dask_flow_over_bare_dask": bare["seconds"] / dask_s,
        "dask_rows_scored": rows,
    }


def print_lines(r: dict[str, float]) -> None:
    print(
        f"{'dask score flow':<28}{r['dask_score_flow_s']:>20.1f} s  x{r['dask_over_local']:.2f} of local "
        f"({r['local_score_flow_s']:.1f} s; target >= 0.7)"
    )
    print(
        f"{'dask units':<28}{r['dask_units']:>20.0f}    {r['dask_rows_per_unit']:,.0f} rows/unit, "
        f"{r['dask_units_per_s']:.2f} units/s (flow), {r['bare_dask_units_per_s']:.2f} units/s (bare Dask)"
    )
    print(f"{'bare Dask chain':<28}{r['bare_dask_s']:>20.1f} s  flow x{r['dask_flow_over_bare_dask']:.2f} of bare Dask")


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
    figures = measure(config, step, args.rows, local["seconds"]["score"])
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
