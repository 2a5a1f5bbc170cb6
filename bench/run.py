"""`make bench`: Scorehouse against the bare libraries and a peer pipeline, on the same data and model.

Prints a table of rows/s and ratios and writes the same to artifacts/bench/results.json. Each flow
step runs in its own process (bench/task.py), so peak memory is measured per step. The score flow's
ratio to the bare chain compares the fastest of three runs of each; ingest + score is the faster of two.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import dask_bench
from bench.chains import bare_chain, fit_peer, peer_chain
from bench.generate import generate
from flows import _environment
from pipeline.config import REPO_ROOT, load_settings
from pipeline.training import binary_target

OUT = REPO_ROOT / "artifacts" / "bench"


def make_config(folder: Path) -> Path:
    """A copy of the repository config whose run-time folders live under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (REPO_ROOT / "scorehouse.toml").read_text()
    reference = str(REPO_ROOT / tomllib.loads(text)["training"]["reference_path"])
    config = folder / "scorehouse.toml"
    config.write_text(
        text.replace('reference_path = "data/sample/lending_club.csv"', f'reference_path = "{reference}"')
        # The bench writes each file whole before the flow runs: nothing to wait for.
        + "\n[drop]\nsettle_seconds = 0\n"
    )
    return config


def step(steps: str, config: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run flow steps in a fresh process (with `env` added to the environment); returns their seconds and
    the process's peak RSS."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.task", steps, str(config)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench step {steps} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def drop_file(source: Path, config: Path) -> None:
    incoming = config.parent / "data" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, incoming / source.name)


EXPLAIN_OFF = {"SCOREHOUSE_EXPLAIN__ENABLED": "false"}
LABELLED = 200_000  # labels in the monitored 1M-row window


def drop_labels(config: Path, rows: int) -> None:
    """A label file for `rows` scored records, each label drawn with its score as the probability of the
    positive class (a model as good as it claims), labelled an hour ago."""
    from flows.runtime import open_store

    settings = load_settings(config)
    with open_store(settings).connect() as con:
        scored = con.execute(
            "SELECT record_id, score FROM predictions_current ORDER BY record_id LIMIT $rows", {"rows": rows}
        ).df()
    negative, positive = settings.dataset.classes
    drawn = np.random.default_rng(0).uniform(size=len(scored)) < scored["score"].to_numpy()
    labels = pd.DataFrame(
        {
            settings.dataset.id_column: scored["record_id"],
            "label": np.where(drawn, positive, negative),
            "labelled_at": (pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    settings.feedback_dir.mkdir(parents=True, exist_ok=True)
    labels.to_csv(settings.feedback_dir / "labels.csv", index=False)


def rescore(config: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The score flow over records already ingested, from empty prediction tables."""
    for table in ("predictions", "predictions_current"):  # the next run creates them again, empty
        shutil.rmtree(config.parent / "data" / "warehouse" / table, ignore_errors=True)
    return step("score", config, env)


def explain_over_plain(config: Path, rounds: int = 2) -> dict[str, float]:
    """The score flow with explanations (the config's [explain]) and without, alternately `rounds` times
    each on the same ingested records; the ratio of the summed seconds (without / with: >= 0.5 is the
    target for exact contributions, >= 0.8 for approximate ones)."""
    seconds = {"with": 0.0, "without": 0.0}
    rss = {"with": 0.0, "without": 0.0}
    fastest_plain = float("inf")
    for number in range(rounds):
        for name in ("with", "without") if number % 2 == 0 else ("without", "with"):
            done = rescore(config, None if name == "with" else EXPLAIN_OFF)
            seconds[name] += done["seconds"]["score"]
            rss[name] = max(rss[name], done["rss_mb"])
            if name == "without":
                fastest_plain = min(fastest_plain, done["seconds"]["score"])
    return {
        "score_plain_fastest_s": fastest_plain,
        "score_explained_s": seconds["with"] / rounds,
        "score_plain_s": seconds["without"] / rounds,
        "explain_over_plain": seconds["without"] / seconds["with"],
        "rss_explained_mb": rss["with"],
        "rss_plain_mb": rss["without"],
    }


def explain_only(rows: int) -> None:
    """`--explain-only`: just the explanation ratio, on `rows` generated rows (a few minutes)."""
    work = OUT / "work-explain"
    shutil.rmtree(work, ignore_errors=True)
    source = generate(rows, work / "files" / "records.parquet", load_settings())
    config = make_config(work / "project")
    step("train", config)
    drop_file(source, config)
    step("ingest", config)
    results = {"rows": rows, **explain_over_plain(config)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "explain.json").write_text(json.dumps(results, indent=2))
    for name, value in results.items():
        print(f"{name:<22}{value:>14,.3f}")


def main() -> None:
    _environment.apply_defaults()  # offline and quiet, as the CLI runs flows
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--explain-only", action="store_true", help="only the score flow with/without explanations")
    args = parser.parse_args()
    if args.explain_only:
        explain_only(args.rows)
        return
    work = OUT / "work"
    shutil.rmtree(work, ignore_errors=True)
    rows, big = args.rows, args.big_rows
    say = lambda line: print(line, flush=True)  # noqa: E731

    say(f"generating {rows:,} and {big:,} rows")
    small_file = generate(rows, work / "files" / "records-small.parquet", load_settings())
    big_file = generate(big, work / "files" / "records-big.parquet", load_settings())

    small = make_config(work / "small")
    step("train", small)
    drop_file(small_file, small)
    say("ingest + score (raw file) ...")
    ingest_score = step("ingest+score", small, EXPLAIN_OFF)  # like the bare chain: no explanations
    again = make_config(work / "small-again")  # a second run needs a project that has not ingested the file
    step("train", again)
    drop_file(small_file, again)
    ingest_score_again = step("ingest+score", again, EXPLAIN_OFF)
    shutil.rmtree(again.parent, ignore_errors=True)
    say("score flow (records already ingested), with explanations and without ...")
    score_small = rescore(small, EXPLAIN_OFF)  # the comparison with the bare chain: scoring alone
    explained = explain_over_plain(small)
    # the last round was with explanations: monitoring below reads explained predictions, as in production
    say(f"monitor on the whole window, {LABELLED:,} of its rows labelled ...")
    drop_labels(small, LABELLED)
    step("feedback", small)  # its own process: the monitor step's peak memory is the monitor's alone
    monitor_small = step("monitor", small)
    say("score flow on a 2-worker Dask LocalCluster, and the bare Dask chain ...")
    # Like with like: the Dask runs score with the config's explanations, as the local runs averaged here did.
    on_dask = dask_bench.measure(
        small, small_file, step, rows, explained["score_explained_s"], monitor_small["seconds"]["monitor"]
    )

    settings = load_settings(small)
    from flows.runtime import load_champion, open_store

    model = load_champion(open_store(settings), settings)
    say("bare chain ...")
    # The fastest of three: one run of the bare chain varied from 7.1 to 8.3 s between idle benches.
    bare_s = min(bare_chain(small_file, work / "bare.parquet", model, settings.scoring.chunk_rows) for _ in range(3))
    say("peer chain ...")
    reference = pd.read_csv(settings.reference_path)
    target = binary_target(reference[settings.dataset.target_column], settings.dataset)
    vectorizer, peer_model = fit_peer(reference, settings.dataset.feature_names, target, dict(settings.model.params))
    peer_s = peer_chain(small_file, work / "peer.parquet", vectorizer, peer_model, settings.dataset.feature_names)

    say("two cycles at once on two halves of the same rows ...")
    pair = two_writers(small_file, make_config(work / "pair"))

    large = make_config(work / "big")
    step("train", large)
    drop_file(big_file, large)
    say(f"ingest {big:,} rows (not timed), then the score flow's peak memory ...")
    step("ingest", large)
    score_big = step("score", large)

    say("dashboard queries on the big warehouse ...")
    from bench.dashboard_bench import time_queries

    dashboard = time_queries(load_settings(large).warehouse_dir / "warehouse.duckdb")

    # The faster of two runs, as the bare chain is the fastest of three (one run varied by a fifth).
    ingest_score_s = min(sum(run["seconds"].values()) for run in (ingest_score, ingest_score_again))
    # The fastest of the score flow's three runs without explanations, as the bare chain's fastest of three.
    score_flow_s = min(score_small["seconds"]["score"], explained["score_plain_fastest_s"])
    results = {
        "rows": rows,
        "big_rows": big,
        "bare_rows_per_s": rows / bare_s,
        "score_flow_rows_per_s": rows / score_flow_s,
        "ingest_score_rows_per_s": rows / ingest_score_s,
        "peer_rows_per_s": rows / peer_s,
        "score_flow_over_bare": bare_s / score_flow_s,
        "ingest_score_over_bare": bare_s / ingest_score_s,
        "score_flow_over_peer": peer_s / score_flow_s,
        **explained,
        "rss_1m_mb": explained["rss_explained_mb"],  # the same config as the 10M run: explanations on
        "rss_10m_mb": score_big["rss_mb"],
        "rss_10m_over_1m": score_big["rss_mb"] / explained["rss_explained_mb"],
        "monitor_1m_s": monitor_small["seconds"]["monitor"],
        "monitor_1m_labels": LABELLED,
        "monitor_1m_rss_mb": monitor_small["rss_mb"],
        "dashboard_landing_s": dashboard["landing_s"],
        "dashboard_filtered_s": dashboard["filtered_s"],
        "two_writers_s": pair["seconds"],
        "two_writers_over_one": ingest_score_s / pair["seconds"],
        "two_writers_duplicates": pair["duplicates"],
        "two_writers_lost": pair["lost"],
        "two_writers_quarantined": pair["quarantined"],
        **on_dask,
    }
    save(results)
    print_table(results)


def save(results: dict[str, Any]) -> None:
    """Merge into results.json: the soak and calibration benches keep their own keys there."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "results.json"
    kept = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**kept, **results}, indent=2))


def two_writers(source: Path, config: Path) -> dict[str, float]:
    """Two whole cycles (ingest + score) started at once on one project with two files: the rows of `source`
    split in halves with distinct ids. Each process takes what the other has not, and the log settles every
    race; returns the slower process's seconds and what a reader finds duplicated, neither stored nor
    quarantined, or quarantined (the rows are all valid and distinct: a race must not refuse one), afterwards."""
    import pyarrow.parquet as pq

    rows = pq.read_table(source)
    half = rows.num_rows // 2
    incoming = config.parent / "data" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    step("train", config)  # before the race: both processes find the champion
    pq.write_table(rows.slice(0, half), incoming / "first-half.parquet")
    pq.write_table(rows.slice(half), incoming / "second-half.parquet")
    command = [sys.executable, "-m", "bench.task", "ingest+score", str(config)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    seconds = []
    for run in runs:
        out, err = run.communicate()
        if run.returncode != 0:
            raise RuntimeError(f"a two-writer cycle failed:\n{err[-3000:]}")
        seconds.append(sum(json.loads(out.strip().splitlines()[-1])["seconds"].values()))
    from flows.runtime import open_store

    with open_store(load_settings(config)).connect() as con:
        stored = con.execute("SELECT count(*) - count(DISTINCT record_id) FROM predictions").fetchone()
        missing = con.execute("SELECT count(*) FROM records r ANTI JOIN predictions p USING (record_id)").fetchone()
        records = con.execute("SELECT (SELECT count(*) FROM records) + (SELECT count(*) FROM quarantine)").fetchone()
        refused = con.execute("SELECT count(*) FROM quarantine").fetchone()
    assert stored is not None and missing is not None and records is not None and refused is not None
    return {
        "seconds": max(seconds),
        "duplicates": float(stored[0]),
        "lost": float(missing[0] + rows.num_rows - records[0]),
        "quarantined": float(refused[0]),
    }


def print_table(r: dict[str, float]) -> None:
    rows = [
        ("rows (big run)", f"{r['rows']:,.0f} ({r['big_rows']:,.0f})", ""),
        ("bare chain rows/s", f"{r['bare_rows_per_s']:,.0f}", ""),
        (
            "score flow rows/s",
            f"{r['score_flow_rows_per_s']:,.0f}",
            f"x{r['score_flow_over_bare']:.2f} of bare (>= 0.85)",
        ),
        (
            "ingest + score rows/s",
            f"{r['ingest_score_rows_per_s']:,.0f}",
            f"x{r['ingest_score_over_bare']:.2f} of bare (>= 0.6)",
        ),
        (
            "score flow explained",
            f"{r['rows'] / r['score_explained_s']:,.0f} rows/s",
            f"x{r['explain_over_plain']:.2f} of without (>= 0.5 exact)",
        ),
        ("peer rows/s", f"{r['peer_rows_per_s']:,.0f}", f"score flow x{r['score_flow_over_peer']:.1f} of peer (>= 4)"),
        (
            "score flow peak RSS MB",
            f"{r['rss_1m_mb']:,.0f} / {r['rss_10m_mb']:,.0f}",
            f"x{r['rss_10m_over_1m']:.2f} (<= 1.15)",
        ),
        ("monitor on the window", f"{r['monitor_1m_s']:.1f} s", f"{r['monitor_1m_rss_mb']:,.0f} MB (< 30 s, 1500 MB)"),
        (
            "dashboard landing/filtered",
            f"{r['dashboard_landing_s']:.2f} s",
            f"{r['dashboard_filtered_s']:.2f} s (< 1 s)",
        ),
    ]
    rows.append(
        (
            "two cycles at once",
            f"{r['two_writers_s']:.1f} s",
            f"x{r['two_writers_over_one']:.2f} of one cycle on the same rows; "
            f"{r['two_writers_duplicates']:.0f} duplicated, {r['two_writers_lost']:.0f} lost, "
            f"{r['two_writers_quarantined']:.0f} quarantined",
        )
    )
    for name, value, note in rows:
        print(f"{name:<28}{value:>22}  {note}")
    dask_bench.print_lines(r)


if __name__ == "__main__":
    np.seterr(all="ignore")
    started = time.perf_counter()
    main()
    print(f"bench took {time.perf_counter() - started:.0f} s")
