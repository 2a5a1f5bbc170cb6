"""Projects for the reliability tests: the repo's dataset contract, small and quick models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import repo_config_document, write_toml
from tests.flows.conftest import Project

# About 1,500 reference rows, 15 trees, one thread: trials fit models again and again, two at a time on two cores.
QUICK_MODEL = {"n_estimators": 15, "max_depth": 2, "learning_rate": 0.3, "n_jobs": 1}


def quick_project(
    folder: Path, *, chunk_rows: int, config_name: str = "scorehouse.toml", **sections: dict[str, Any]
) -> Project:
    """A project in `folder` (its folders resolve inside it) whose models train in about a second.

    `sections` update the config's sections, e.g. `model={"threshold": 0.2}`."""
    document = repo_config_document(chunk_rows=chunk_rows)
    document["training"]["reference_fraction"] = 0.15
    document["model"]["params"] = dict(QUICK_MODEL)
    for name, values in sections.items():
        document.setdefault(name, {}).update(values)
    return Project(folder=folder, config_path=write_toml(folder / config_name, document))
