"""The Evidently UI's workspace: monitoring snapshots kept where `evidently ui --workspace DIR` shows them.

A local workspace is a folder: one sub-folder per project (`<project id>/metadata.json`) holding the
project's snapshots as JSON files (`<project id>/snapshots/<snapshot id>.json`). `evidently ui` watches
the folder, so a snapshot written by a flow appears in a running UI without a restart, and any number of
processes may add snapshots (each is its own file).

The project's id is derived from its name, so two runs that create the project at the same moment write
the same project rather than two of the same name. Pure: no Prefect, no warehouse; Evidently is imported
only when something is published (it takes seconds), with its usage reporting off.
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
    workspace: Path, project: str, snapshots: Mapping[str, Any], description: str | None = None
) -> list[Published]:
    """Add each Evidently snapshot (`Report.run(...)` result) to `project` in the workspace folder,
    under its key as name; the folder and the project are created when missing."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from evidently.sdk.models import ProjectModel
    from evidently.ui.workspace import Workspace

    workspace.mkdir(parents=True, exist_ok=True)
    ws = Workspace(str(workspace))
    pid = project_id(project)
    if ws.get_project(pid) is None:
        ws.add_project(ProjectModel(id=uuid.UUID(pid), name=project, description=description))
    published = []
    for name, snapshot in snapshots.items():
        ref = ws.add_run(pid, snapshot, include_data=False, name=name)
        published.append(Published(name=name, project_id=pid, snapshot_id=str(ref.id)))
    return published
