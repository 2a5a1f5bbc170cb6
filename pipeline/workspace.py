"""The Evidently UI's workspace: monitoring snapshots kept where `evidently ui --workspace DIR` shows them.

A local workspace is a folder: one sub-folder per project (`<project id>/metadata.json`) holding the
project's snapshots as JSON files (`<project id>/snapshots/<snapshot id>.json`). `evidently ui` watches
the folder, so a snapshot written by a flow appears in a running UI without a restart, and any number of
processes may add snapshots (each is its own file).

The project's id is derived from its name, so two runs that create the project at the same moment write
the same project rather than two of the same name. Evidently 0.7 defines a project's dashboard as code
(`evidently.sdk.panels`): `add_dashboard` gives a new project its panels, so the UI never opens empty.
Pure: no Prefect, no warehouse; Evidently is imported only when something is published (it takes
seconds), with its usage reporting off.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Fixed namespace for project ids: uuid5(NAMESPACE, project name).
NAMESPACE = uuid.UUID("5c0a3e1e-7a51-4f0e-9d8f-6b3c1f2a9e47")


@dataclass(frozen=True)
class Published:
    """One snapshot added to the workspace: its name and where the UI shows it."""

    name: str
    project_id: str
    snapshot_id: str


def project_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


def publish(
    workspace: Path,
    project: str,
    snapshots: Mapping[str, Any],
    description: str | None = None,
    keep_reports: int | None = None,
) -> list[Published]:
    """Add each Evidently snapshot (`Report.run(...)` result) to `project` in the workspace folder,
    under its key as name; the folder and the project are created when missing.

    With `keep_reports`, the project keeps the snapshots of that many reports (this one included, a report
    being these `snapshots`): the oldest are deleted before the workspace is opened, because opening it
    parses every snapshot of every project (about 0.25 s a report with a 20,000-row drift sample: a day of the
    15-minute schedule made each monitor run 30 s longer, and it grew without end)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from evidently.sdk.models import ProjectModel
    from evidently.ui.workspace import Workspace

    workspace.mkdir(parents=True, exist_ok=True)
    pid = project_id(project)
    if keep_reports is not None:
        keep_newest(workspace / pid / "snapshots", (keep_reports - 1) * len(snapshots))
    ws = Workspace(str(workspace))
    if ws.get_project(pid) is None:
        ws.add_project(ProjectModel(id=uuid.UUID(pid), name=project, description=description))
    add_dashboard(ws, pid)
    published = []
    for name, snapshot in snapshots.items():
        ref = ws.add_run(pid, snapshot, include_data=False, name=name)
        published.append(Published(name=name, project_id=pid, snapshot_id=str(ref.id)))
    return published


def keep_newest(folder: Path, keep: int) -> int:
    """Delete all but the `keep` newest snapshot files in a project's snapshot folder, as Evidently's own
    `delete_run` does on disk (its local storage is a file per snapshot); returns how many went."""
    if not folder.is_dir():
        return 0
    files = sorted(folder.glob("*.json"), key=lambda path: (path.stat().st_mtime_ns, path.name))
    old = files[: max(len(files) - keep, 0)]
    for path in old:
        path.unlink(missing_ok=True)  # a monitor run at the same time may have deleted it already
    return len(old)


# The dashboard's panels: (title, description, [(metric, labels, legend)]). The numbers come from the
# "numbers" snapshot of each report (`pipeline.evidently_report.numbers_report`): Scorehouse's own values,
# the ones the alerts rest on; the last panel is Evidently's own count from its drift preset.
PANELS: list[tuple[str, str, list[tuple[str, dict[str, str], str]]]] = [
    (
        "Drift share",
        "Share of the feature and embedding columns that drifted (significant and material); alert above its bar.",
        [
            ("MeanValue", {"column": "drift_share_features"}, "features"),
            ("MeanValue", {"column": "drift_share_embedding"}, "embedding columns"),
        ],
    ),
    (
        "Prediction drift",
        "Normed Wasserstein distance of the scores from the hold-out scores (in hold-out standard deviations).",
        [("MeanValue", {"column": "prediction_drift"}, "scores")],
    ),
    (
        "Quality: realised and estimated ROC AUC",
        "Realised on the labelled rows of each window; estimated (CBPE) from the scores of the unlabelled rows.",
        [
            ("MeanValue", {"column": "roc_auc"}, "realised"),
            ("MeanValue", {"column": "estimated_roc_auc"}, "estimated, unlabelled rows"),
            ("MeanValue", {"column": "estimated_roc_auc_labelled"}, "estimated, labelled rows"),
        ],
    ),
    (
        "Evidently's drifted columns",
        "Evidently's own per-column tests (no materiality bar, no correction for many columns): may differ.",
        [("DriftedColumnsCount", {"value_type": "count"}, "drifted columns")],  # not also its share
    ),
]
DASHBOARD_TAB = "Monitoring"


def add_dashboard(ws: Any, pid: str) -> None:
    """Give the project its panels, once: a project that has panels already is left as it is."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    project = ws.get_project(pid)
    if project is None or project.dashboard.model().panels:
        return
    for title, description, series in PANELS:
        values = [PanelMetric(metric=metric, metric_labels=labels, legend=legend) for metric, labels, legend in series]
        panel = line_plot_panel(title=title, values=values, description=description, size="half")
        project.dashboard.add_panel(panel, tab=DASHBOARD_TAB)
