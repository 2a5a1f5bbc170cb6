"""Re-runs (invariant 2): every flow run three times over the same inputs adds nothing after the first.

The inputs are dropped again before every run (the same bytes under the same names), so each run sees
the files a retried or duplicated schedule would see. After the first run of each flow, nothing may
change: not a row, not a warehouse file, not a model or report file, not the catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.cycle import scoring_cycle
from flows.feedback import collect_feedback
from flows.ingest import ingest
from flows.monitor import monitor
from flows.retrain import retrain
from flows.score import score
from flows.train import train
from pipeline import simulate
from tests.flows.conftest import Project, arrivals, sample
from tests.reliability._projects import quick_project
from warehouse.catalog import catalog_path

RUNS = 3  # the first does the work; two repeats show a repeat adds nothing, and a repeat of a repeat


def _inputs(project: Project) -> dict[Path, bytes]:
    """Two record files (with bad rows) and a label file for most of their records."""
    settings = project.settings
    a = arrivals(300)
    a.loc[7, "int_rate"] = "abc"
    b = arrivals(200, start=4300)
    b.loc[3, "loan_id"] = a.loc[0, "loan_id"]
    labelled = sample().iloc[4000:4450]
    labels = simulate.labels_file(labelled, settings.dataset, pd.Timestamp("2026-11-20").date())
    return {
        settings.incoming_dir / "a.csv": a.to_csv(index=False).encode(),
        settings.incoming_dir / "b.csv": b.to_csv(index=False).encode(),
        settings.feedback_dir / "labels.csv": labels.to_csv(index=False).encode(),
    }


def _drop(files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _state(project: Project) -> dict[str, Any]:
    """Everything a run could add to: rows, warehouse files, model and report files, the catalog file."""
    settings = project.settings
    catalog = catalog_path(project.store()).stat()
    return {
        "rows": project.counts(),
        "warehouse": project.warehouse_files(),
        "artifacts": sorted(
            str(p.relative_to(settings.base_dir))
            for folder in (settings.models_dir, settings.reports_dir)
            for p in folder.rglob("*")
            if p.is_file()
        ),
        "catalog": (catalog.st_ino, catalog.st_mtime_ns),
    }


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return quick_project(
        tmp_path / "project", chunk_rows=100, monitoring={"min_labels": 50}, retrain={"every_new_labels": 100}
    )


def test_every_flow_run_three_times_over_the_same_inputs_adds_nothing_after_the_first(project: Project) -> None:
    config = project.config
    files = _inputs(project)
    records, labels = dict(list(files.items())[:2]), dict(list(files.items())[2:])
    flows: list[tuple[str, Callable[[], Any], dict[Path, bytes]]] = [
        ("train", lambda: train(config), {}),
        ("ingest", lambda: ingest(config), records),
        ("score", lambda: score(config), {}),
        ("collect_feedback", lambda: collect_feedback(config), labels),
        ("monitor", lambda: monitor(config), {}),
        ("retrain", lambda: retrain(config), {}),
        ("scoring_cycle", lambda: scoring_cycle(config), files),
    ]
    first: dict[str, Any] = {}
    for name, run, inputs in flows:
        _drop(inputs)
        first[name] = run()
        after_first = _state(project)
        for _ in range(RUNS - 1):
            _drop(inputs)
            run()
        # Runs only ever add (batches and files are immutable): the same state after the first and the last
        # run means that none of the repeats added anything.
        assert _state(project) == after_first, f"{name} added something when run again"

    # The first runs did the work (so the repeats had something to repeat).
    rows = _state(project)["rows"]
    assert first["train"] == "v1" and rows["records"] + rows["quarantine"] == 500
    assert first["score"].scored == 498  # a's bad row and b's duplicate are quarantined
    assert first["monitor"].new_report and first["retrain"].challenger == "v2"
    assert rows["predictions"] >= rows["records"] and rows["feedback"] > 0 and rows["monitoring"] > 0
