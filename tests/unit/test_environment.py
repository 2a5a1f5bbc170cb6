"""Processes start with quiet, offline Prefect defaults; importing the code changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from flows import _environment
from tests.conftest import REPO_ROOT

_CHANGES = """
import getpass, json, os, sys
calls = []
getpass.getuser = lambda: calls.append("getuser") or "someone"
before = dict(os.environ)
import flows, flows.cli, flows.drop_folder, pipeline.config
after = dict(os.environ)
changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
print(json.dumps({"changed": changed, "getuser": calls}))
"""


def test_importing_the_flows_changes_no_variable_and_asks_for_no_user_name() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DO_NOT_TRACK"))}
    out = subprocess.run(
        [sys.executable, "-c", _CHANGES], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == {"changed": [], "getuser": []}


def test_the_temporary_api_gets_time_to_start_on_a_busy_machine() -> None:
    environ: dict[str, str] = {}
    applied = _environment.apply_defaults(environ)
    assert int(environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]) >= 120  # Prefect's own is 20 s
    assert applied == environ and environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_a_value_already_set_wins() -> None:
    environ = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "45", "PREFECT_HOME": "/somewhere"}
    applied = _environment.apply_defaults(environ)
    assert (
        environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "45" and environ["PREFECT_HOME"] == "/somewhere"
    )
    assert "PREFECT_HOME" not in applied


def test_the_command_line_applies_the_defaults_before_a_command_runs() -> None:
    script = (
        "import os, sys; from typer.testing import CliRunner; from flows.cli import app; "
        "r = CliRunner().invoke(app, ['status', '--config', '/nonexistent.toml']); "
        "print(os.environ.get('PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_SERVER_EPHEMERAL")}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == str(_environment.EPHEMERAL_STARTUP_TIMEOUT_S)
