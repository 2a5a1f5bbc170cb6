"""Invariant 4: read-only DuckDB sessions stay open on the catalog while flows write; neither side errors,
and a reader sees whole batches only. The flows swap in a new catalog file after their commits: a session
held open keeps answering from the snapshot it opened (its files stay until the vacuum retention), and a
reader that follows the file (as the dashboard does) sees the tables grow."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

from flows.cycle import scoring_cycle
from flows.train import train
from tests.flows.conftest import Project, arrivals, make_project
from warehouse.catalog import catalog_path

READER = """
import os, sys, time, pathlib, duckdb
catalog, stop = sys.argv[1], pathlib.Path(sys.argv[2])
def open_catalog():  # a private instance with the file now on disk attached read-only
    con = duckdb.connect()
    con.execute(f"ATTACH '{catalog}' AS c (READ_ONLY)")
    con.execute("USE c")
    return con
def identity():
    s = os.stat(catalog)
    return s.st_ino, s.st_mtime_ns
held, con, opened = open_catalog(), None, None   # `held` stays open on its snapshot for the whole run
def counts(session):
    p = session.execute("SELECT count(*) FROM predictions").fetchone()[0]
    r = session.execute("SELECT count(*) FROM records").fetchone()[0]
    return p, r
print("ready", *counts(held), flush=True)
while not stop.exists():
    if identity() != opened:
        con, opened = open_catalog(), identity()
    counts(held)  # the old snapshot still answers
    print("seen", *counts(con), flush=True)
    time.sleep(0.01)
con = open_catalog()
print("done", *counts(con), flush=True)
"""


def _prefix_sums(project: Project, table: str, commit_order: str) -> set[int]:
    """Row counts after each batch, in the order the batches were committed."""
    sql = f"SELECT count(*) AS n FROM {table} GROUP BY batch_id ORDER BY {commit_order}"
    return {0, *itertools.accumulate(project.query(sql)["n"].tolist())}


def _wait_for(path: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"the reader never printed {text!r}: {path.read_text() if path.exists() else ''}")


def test_an_open_read_only_session_and_the_flows_never_block_each_other(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", chunk_rows=150)
    train(project.config)
    catalog = catalog_path(project.store())
    out, err, stop = tmp_path / "reader.out", tmp_path / "reader.err", tmp_path / "stop"
    script = tmp_path / "reader.py"
    script.write_text(READER)

    with open(out, "w") as stdout, open(err, "w") as stderr:
        reader = subprocess.Popen(
            [sys.executable, str(script), str(catalog), str(stop)], stdout=stdout, stderr=stderr, cwd=tmp_path
        )
        try:
            _wait_for(out, "ready")
            for day, files in enumerate([[(400, 4000), (333, 4400)], [(517, 4800), (211, 5400)]], start=1):
                for part, (n, start) in enumerate(files):
                    project.drop_csv(arrivals(n, start=start), f"day-{day}-{part}.csv")
                result = scoring_cycle(project.config)  # the flows must not fail while the reader holds the catalog
                assert (result.files, result.scored.scored) == (2, sum(n for n, _ in files))
            time.sleep(0.2)
            stop.touch()
            assert reader.wait(timeout=30) == 0, err.read_text()
        finally:
            if reader.poll() is None:
                reader.kill()

    assert err.read_text().strip() == ""
    lines = [line.split() for line in out.read_text().splitlines()]
    assert lines[0][0] == "ready" and lines[-1][0] == "done"
    seen = [(int(p), int(r)) for _, p, r in lines]
    assert len(seen) > 20, "the reader should have queried many times while the flows ran"
    predictions = [p for p, _ in seen]
    records = [r for _, r in seen]
    assert predictions == sorted(predictions) and records == sorted(records)  # counts only grow
    total = 400 + 333 + 517 + 211
    assert seen[-1] == (total, total)

    # Every count a reader saw is a sum of whole batches: never part of a batch.
    assert set(predictions) <= _prefix_sums(project, "predictions", "min(scored_at), batch_id")
    # The blocks of one file share its ingest time and are committed in file order.
    assert set(records) <= _prefix_sums(project, "records", "min(ingested_at), min(row_number)")
    assert len(set(predictions)) > 2, "the reader should have seen the predictions grow"
