"""`dataset.event_time_column` end to end: train on it, ingest it, monitor windows of the period it describes."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from flows.feedback import collect_feedback
from flows.ingest import ingest
from flows.monitor import monitor
from flows.score import score
from flows.train import train
from pipeline import simulate
from tests.conftest import repo_config_document, write_toml
from tests.flows.conftest import Project, arrivals, sample


def with_event_time(frame: pd.DataFrame, first_day: str) -> pd.DataFrame:
    """Each row describes one day: 100 rows per day from `first_day`."""
    days = pd.Timestamp(first_day, tz="UTC") + pd.to_timedelta([i // 100 for i in range(len(frame))], unit="D")
    return frame.assign(issued_at=days.strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_event_time_windows_through_the_real_flows(tmp_path: Path) -> None:
    reference = tmp_path / "reference.csv"
    with_event_time(sample(), "2020-01-01").to_csv(reference, index=False)
    document = repo_config_document(chunk_rows=1000)
    document["dataset"]["event_time_column"] = "issued_at"
    document["training"]["reference_path"] = str(reference)
    document["monitoring"] = {"window_by": "event_time", "window_days": 2, "min_labels": 20}
    project = Project(folder=tmp_path, config_path=write_toml(tmp_path / "scorehouse.toml", document))

    assert train(project.config) == "v1"  # used to fail with a KeyError on the renamed column
    rows = with_event_time(arrivals(600), "2026-03-01")  # six days of data, arriving in one batch
    project.drop_csv(rows, "batch.csv")
    ingest(project.config)
    score(project.config)
    labels = simulate.labels_file(sample().iloc[4000:4600], project.settings.dataset, date(2026, 3, 10))
    project.settings.feedback_dir.mkdir(parents=True, exist_ok=True)
    labels.to_csv(project.settings.feedback_dir / "labels.csv", index=False)
    collect_feedback(project.config)

    latest = monitor(project.config)  # the last two days the data describes, not the one day it arrived
    past = monitor(project.config, window_days=3, as_of=date(2026, 3, 2))  # 1 and 2 March (none before)
    sizes = project.query(
        "SELECT report_id, window_start, window_end, sample_size FROM monitoring WHERE metric = 'drift_share_features'"
    ).set_index("report_id")
    assert sizes.loc[latest.report_id, "sample_size"] == 200
    assert sizes.loc[past.report_id, "sample_size"] == 200
    assert str(sizes.loc[past.report_id, "window_end"].date()) == "2026-03-02"
