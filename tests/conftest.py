"""Shared setup: an isolated, offline Prefect home, a temporary Prefect server for the flow tests, configs.

Prefect reads its settings when it is imported, so PREFECT_HOME is pointed at a temporary folder here,
before any test module imports Prefect; the other defaults fill in only what is not set yet.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_PREFECT_HOME = tempfile.mkdtemp(prefix="scorehouse-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)  # never run the tests against a developer's server
os.environ.pop("SCOREHOUSE_CONFIG", None)

from flows import _environment  # noqa: E402

_environment.apply_defaults()  # quiet, offline Prefect defaults, before Prefect is imported

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_CONFIG = REPO_ROOT / "scorehouse.toml"
SAMPLE = REPO_ROOT / "data" / "sample" / "lending_club.csv"

# Tests write whole files and run the flows at once: no waiting for a dropped file to settle (the drop
# protocol's own tests set the window).
SETTLED_AT_ONCE = {"settle_seconds": 0}

# Small and fast, still a real XGBoost model.
FAST_PARAMS = {"n_estimators": 50, "max_depth": 2, "learning_rate": 0.1}


# --------------------------------------------------------------------------------------------- TOML


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(document: dict[str, dict[str, Any]]) -> str:
    """A TOML text for a two-level document (sections of keys), enough for Scorehouse configs."""
    lines: list[str] = []
    for section, body in document.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in body.items()]
        lines.append("")
    return "\n".join(lines)


def write_toml(path: Path, document: dict[str, dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_toml(document))
    return path


def repo_config_document(*, chunk_rows: int | None = None, **model: Any) -> dict[str, dict[str, Any]]:
    """The repo config's dataset, training and model sections, with the reference path made absolute,
    small model parameters and no [paths] (so every folder resolves inside the config's own folder)."""
    source = tomllib.loads(REPO_CONFIG.read_text())
    document = {name: dict(source[name]) for name in ("dataset", "training", "model")}
    document["training"]["reference_path"] = str(SAMPLE)
    document["model"]["params"] = dict(FAST_PARAMS)
    document["model"].update(model)
    if chunk_rows is not None:
        document["scoring"] = {"chunk_rows": chunk_rows}
    document["drop"] = dict(SETTLED_AT_ONCE)
    return document


def tiny_dataset_section() -> dict[str, Any]:
    """A small dataset contract: two numeric features and one categorical."""
    return {
        "id_column": "id",
        "target_column": "outcome",
        "classes": ["no", "yes"],
        "features": [
            {"name": "amount", "kind": "numeric", "min": 0, "max": 100, "nullable": False},
            {"name": "rate", "kind": "numeric"},
            {"name": "colour", "kind": "categorical", "allowed": ["red", "green", "blue"], "nullable": False},
        ],
    }


def tiny_config_document(reference_path: str = "reference.csv") -> dict[str, dict[str, Any]]:
    return {
        "dataset": tiny_dataset_section(),
        "training": {"reference_path": reference_path, "holdout_fraction": 0.25, "seed": 7},
        "model": {"embedding_size": 3, "input": "both", "threshold": 0.4, "params": dict(FAST_PARAMS)},
        "drop": dict(SETTLED_AT_ONCE),
    }


# ------------------------------------------------------------------------------------------ scheduling

# The modules that start a real S3 server. Its ports are fixed, so one runs at a time on this machine
# (tests/s3server.py holds a lock); with `make test`'s two workers, a second S3 module sent to the other worker
# waited idle for the first, over a minute and a half.
S3_MODULES = frozenset({"tests/flows/test_on_s3.py", "tests/flows/test_dask_engine.py"})


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, with the S3 modules sent to one worker as one unit, one after the other."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class S3ModulesTogether(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            scope = str(super()._split_scope(nodeid))
            return "the S3 modules" if scope in S3_MODULES else scope

    return S3ModulesTogether(config, log)


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def _no_scorehouse_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SCOREHOUSE_* variable of the caller's shell may change what a test sees."""
    for name in list(os.environ):
        if name.startswith("SCOREHOUSE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server (about 20 s to start) for every flow test of the session.

    Requested by the flow tests only (tests/flows/conftest.py), so the unit tests never wait for it.
    """
    import prefect.settings
    from prefect.testing.utilities import prefect_test_harness

    # Flow-run heartbeats detect crashed runs of deployments; here they only add a thread join of up to
    # 1 s to the end of every flow run (about a minute over the suite).
    no_heartbeats = {prefect.settings.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    # The server starts in about 20 s idle; with both cores busy it took over 90 s here. The limit only bounds
    # the wait, so it is generous: a busy machine must not fail the suite.
    with (
        prefect_test_harness(server_startup_timeout=_environment.EPHEMERAL_STARTUP_TIMEOUT_S),
        prefect.settings.temporary_settings(updates=no_heartbeats),
    ):
        yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)
