"""A real Prefect server and worker on a free loopback port, started and stopped by PID.

Everything the stack writes lives under one temporary folder: the server's SQLite database, the Prefect
home of every process, the logs, and a Scorehouse project (a config whose relative paths resolve inside
that folder), so the repository's data/ and artifacts/ are never touched. The processes are the real
CLIs (`prefect server start`, `prefect deploy`, `prefect worker start`), run with this interpreter.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO_ROOT

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Stack:
    """The processes of one local stack and a client for its REST API."""

    root: Path
    port: int
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call, retried like Prefect's own client does when the server answers 503 (its SQLite
        database is busy while flow runs write their logs) or cannot be reached for a moment."""
        for attempt in range(6):
            try:
                response = httpx.request(method, f"{self.api_url}{path}", timeout=30, **kwargs)
            except httpx.TransportError:
                if attempt == 5:
                    raise
            else:
                if response.status_code not in (429, 503) or attempt == 5:
                    return response
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.log(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def prefect(self, *args: str, cwd: Path = REPO_ROOT, timeout: float = 300) -> str:
        """Run a Prefect CLI command to completion; fail with its output if it fails. `deploy --all` took over
        120 s with both cores busy."""
        done = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, name: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        """Start a long-running Prefect command in its own session (its PID is its process group)."""
        self.log(name).parent.mkdir(parents=True, exist_ok=True)
        with self.log(name).open("wb") as out:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "prefect", *args],
                cwd=cwd,
                env=env or self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, name: str, grace: float = 20) -> None:
        """SIGTERM to the process group of that PID, SIGKILL after `grace` seconds."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def healthy(self) -> bool:
        assert self.alive("server"), f"the Prefect server exited:\n{self.tail('server')}"
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # ------------------------------------------------------------------------------------ the API

    def deployment(self, name: str) -> dict[str, Any]:
        response = self.request("GET", f"/deployments/name/{name}")
        assert response.status_code == 200, f"deployment {name} not found: {response.text}"
        return dict(response.json())

    def run_deployment(self, name: str, **body: Any) -> dict[str, Any]:
        """Create a flow run of a deployment, as the UI's "Run" button and `prefect deployment run` do."""
        response = self.request("POST", f"/deployments/{self.deployment(name)['id']}/create_flow_run", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/flow_runs/{run_id}").json())

    def flow_runs(self, **flow_runs: Any) -> list[dict[str, Any]]:
        response = self.request("POST", "/flow_runs/filter", json={"flow_runs": flow_runs, "limit": 200})
        assert response.status_code == 200, response.text
        return list(response.json())

    def wait_for_run(self, run_id: str, timeout: float) -> dict[str, Any]:
        """Wait until the run ends; fail with its state message, its logs and the worker's log if it fails."""
        run: dict[str, Any] = wait_until(
            lambda: (r := self.flow_run(run_id))["state_type"] in TERMINAL and r,
            timeout,
            f"flow run {run_id} to finish (worker log:\n{self.tail('worker')})",
            interval=1,
        )
        if run["state_type"] != "COMPLETED":
            logs = self.request(
                "POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
            )
            messages = "\n".join(entry["message"] for entry in logs.json())
            raise AssertionError(
                f"flow run {run['name']} ended {run['state_type']}: {run['state']['message']}\n"
                f"{messages}\n--- worker:\n{self.tail('worker')}"
            )
        return run

    def artifacts(self, run_ids: list[str]) -> list[dict[str, Any]]:
        response = self.request("POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": run_ids}}})
        assert response.status_code == 200, response.text
        return list(response.json())


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A Prefect server on a free loopback port with a temporary database; stopped (every process started
    through it, by PID) when the test ends, whatever happened."""
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SCOREHOUSE_"))}
    env = inherited | {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        # The scheduler's main loop every 2 s instead of 60 s, so the test sees it schedule runs.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "DO_NOT_TRACK": "1",
    }
    stack = Stack(root=tmp_path, port=port, env=env)
    try:
        stack.start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port), cwd=tmp_path)
        wait_until(stack.healthy, 120, f"the Prefect server on port {port}")
        yield stack
    finally:
        for name in [n for n in stack.processes if n != "server"]:
            stack.stop(name)
        stack.stop("server")
