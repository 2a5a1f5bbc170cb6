"""docker-compose.yml and the Dockerfile, checked without a Docker engine (there is none on our machines).

What this exercises: the file is valid against the current Compose specification (the `compose-spec`
parser, offline, after the same `${VAR}` interpolation `docker compose` does, with .env.example); every
variable it uses is documented in .env.example and the password has no value there; and the services, the
commands they run, their ports, volumes and healthchecks agree with the local stack of the Makefile
(`make server`, `make deploy`, `make worker`, `make up`, `make reports-ui`). When a `docker compose`
client is present, `docker compose config` must accept the file too (skipped here: the plugin is absent).

What it does not: build the image, pull postgres, start a container, or run the healthchecks. Those need
a Docker engine.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from functools import cache
from typing import Any

import compose_spec
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

COMPOSE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
APP = "/app"  # the image's WORKDIR: where the checkout is, inside the containers
PROGRAMS = ("prefect", "streamlit", "evidently", "dask")
# A value for what .env.example leaves empty on purpose (the database password).
TEST_ONLY = {"POSTGRES_PASSWORD": "test-only-not-a-secret"}

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}` and `${VAR?error}`."""

    def value(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        given = values.get(name)
        empty = given is None or (given == "" and operator is not None and operator.startswith(":"))
        if operator in (":-", "-"):
            return argument if empty else str(given)
        if operator in (":?", "?"):
            if empty:
                raise ValueError(f"{name}: {argument}")
            return str(given)
        return given or ""

    return VARIABLE.sub(value, text.replace("$$", "\0")).replace("\0", "$")


@cache
def compose() -> dict[str, Any]:
    text = interpolate(COMPOSE.read_text(), env_example() | TEST_ONLY)
    parsed = compose_spec.PyOptions(apply_merge=True).from_yaml(text)  # `<<: *app` anchors merged
    parsed.validate()
    return dict(parsed.to_dict())


def service(name: str) -> dict[str, Any]:
    return dict(compose()["services"][name])


@cache
def make_variable(name: str) -> str:
    """A variable of the Makefile, expanded by make itself."""
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", 'print-%: ; @printf "%s\\n" "$($*)"', f"print-{name}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def program_args(command: str | list[str]) -> list[str]:
    """The program and its arguments, without what only launches it (`env X=1`, `uv run --frozen`, `exec`)."""
    tokens = shlex.split(command) if isinstance(command, str) else list(command)
    start = next(i for i, token in enumerate(tokens) if token in PROGRAMS)
    return tokens[start:]


def without(args: list[str], flag: str, has_value: bool = True) -> list[str]:
    if flag not in args:
        return args
    i = args.index(flag)
    return args[:i] + args[i + (2 if has_value else 1) :]


def value_of(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def bound(args: list[str], flag: str, address: str) -> list[str]:
    """The arguments with the listen address checked and set aside: 127.0.0.1 locally, 0.0.0.0 in a container
    (where the published port must reach it)."""
    assert value_of(args, flag) == address, args
    return without(args, flag)


def published(name: str) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each published port."""
    ports = []
    for port in service(name).get("ports", []):
        assert isinstance(port, str), f"{name}: write ports as HOST_IP:HOST:CONTAINER strings"
        host_ip, host, container = port.rsplit(":", 2)
        ports.append((host_ip, int(host), int(container)))
    return ports


def mounts(name: str) -> dict[str, str]:
    """Volume name -> path in the container."""
    pairs = (volume.split(":")[:2] for volume in service(name).get("volumes", []))
    return {source: target for source, target in pairs}


# -------------------------------------------------------------------------------------------------- tests


def test_compose_file_is_valid_current_compose_spec() -> None:
    spec = compose()
    assert spec["name"] == "scorehouse"
    assert "version" not in spec  # obsolete in the current specification
    assert set(spec["services"]) == {
        "postgres",
        "prefect-server",
        "worker",
        "dashboard",
        "evidently-ui",
        "dask-scheduler",
        "dask-worker",
    }
    for name, body in spec["services"].items():
        for dependency in body.get("depends_on", {}):
            assert dependency in spec["services"], f"{name} depends on an unknown service {dependency}"
            assert body["depends_on"][dependency]["condition"] == "service_healthy", name
        assert "healthcheck" in body, f"{name} has no healthcheck"


def test_the_validator_rejects_a_broken_file() -> None:
    """The check above has teeth: a misspelt key and an undeclared volume are refused."""
    text = interpolate(COMPOSE.read_text(), env_example() | TEST_ONLY)
    with pytest.raises(ValueError, match="healthchek"):
        compose_spec.PyOptions(apply_merge=True).from_yaml(text.replace("healthcheck:", "healthchek:", 1))
    broken = compose_spec.PyOptions(apply_merge=True).from_yaml(text.replace("- data:/app/data", "- dtaa:/app/data"))
    with pytest.raises(ValueError, match="dtaa"):
        broken.validate()


def test_no_secret_in_the_file_and_every_variable_documented() -> None:
    text = COMPOSE.read_text()
    documented = env_example()
    used = {match.group(1) for match in VARIABLE.finditer(text)}
    assert used <= set(documented), f"undocumented in .env.example: {used - set(documented)}"
    assert documented["POSTGRES_PASSWORD"] == "", ".env.example must not carry a password"
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in text  # required, never defaulted
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolate(text, documented)  # an unedited copy of .env.example does not start


def test_ports_are_the_local_stacks_and_bound_to_loopback_by_default() -> None:
    assert env_example()["BIND_ADDRESS"] == "127.0.0.1"
    expected = {
        "prefect-server": int(make_variable("PREFECT_PORT")),
        "dashboard": int(make_variable("DASHBOARD_PORT")),
        "evidently-ui": int(make_variable("REPORTS_PORT")),
    }
    for name, port in expected.items():
        assert published(name) == [("127.0.0.1", port, port)], name
    for name in ("postgres", "worker", "dask-scheduler", "dask-worker"):
        assert published(name) == [], f"{name} publishes a port"
    # Without BIND_ADDRESS set at all, the default is loopback too.
    bare = interpolate(COMPOSE.read_text(), TEST_ONLY)
    assert "0.0.0.0:" not in bare and bare.count('"127.0.0.1:') == 3


def test_commands_are_the_local_stacks() -> None:
    """Each container runs what the Makefile runs, but listening on 0.0.0.0 inside its container."""
    host = make_variable("HOST")
    server = program_args(service("prefect-server")["command"])
    assert bound(server, "--host", "0.0.0.0") == bound(program_args(make_variable("SERVER_CMD")), "--host", host)

    # The worker registers the deployments at start (`make deploy`), then polls (`make worker`).
    steps = [program_args(step) for step in service("worker")["command"][2].split("&&")]
    assert service("worker")["command"][:2] == ["sh", "-c"]
    assert steps[0] == program_args(make_variable("POOL_CMD"))
    assert steps[1] == program_args(make_variable("DEPLOY_CMD"))
    local_worker = without(program_args(make_variable("WORKER_CMD")), "--name")
    assert without(without(steps[2], "--name"), "--with-healthcheck", has_value=False) == local_worker

    dashboard = program_args(service("dashboard")["command"])
    assert bound(dashboard, "--server.address", "0.0.0.0") == bound(
        program_args(make_variable("DASHBOARD_CMD")), "--server.address", host
    )
    reports = program_args(service("evidently-ui")["command"])
    assert bound(reports, "--host", "0.0.0.0") == bound(program_args(make_variable("REPORTS_CMD")), "--host", host)


def test_environment_links_and_telemetry() -> None:
    worker = service("worker")["environment"]
    port = make_variable("PREFECT_PORT")
    assert worker["PREFECT_API_URL"] == f"http://prefect-server:{port}/api"
    assert worker["SCOREHOUSE_DASHBOARD_URL"] == f"http://127.0.0.1:{make_variable('DASHBOARD_PORT')}"
    assert worker["SCOREHOUSE_REPORTS_URL"] == f"http://127.0.0.1:{make_variable('REPORTS_PORT')}"
    assert service("evidently-ui")["environment"]["DO_NOT_TRACK"] == "1"
    server = service("prefect-server")["environment"]
    # Leases in files, as `make server` keeps them (a restart must not leak a deployment's only slot).
    name, value = "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", "prefect.server.concurrency.lease_storage.filesystem"
    assert server[name] == value and f"{name}={value}" in make_variable("SERVER_CMD")
    assert server["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://prefect:")
    assert server["PREFECT_SERVER_DATABASE_CONNECTION_URL"].endswith("@postgres:5432/prefect")


def test_volumes_are_shared_as_the_local_folders_are() -> None:
    workspace = f"{APP}/{make_variable('WORKSPACE')}"
    reports_args = program_args(service("evidently-ui")["command"])
    assert f"{APP}/{value_of(reports_args, '--workspace')}" == workspace
    # `monitor` publishes to <reports folder>/evidently (flows/monitor.py); the repo config's reports folder:
    assert workspace == f"{APP}/artifacts/reports/evidently"
    assert mounts("worker") == {"data": f"{APP}/data", "artifacts": f"{APP}/artifacts", "workspace": workspace}
    assert mounts("evidently-ui") == {"workspace": workspace}
    assert mounts("dashboard") == {"data": f"{APP}/data", "artifacts": f"{APP}/artifacts"}
    assert mounts("postgres") == {"postgres": "/var/lib/postgresql/data"}
    assert mounts("prefect-server") == {"prefect-home": f"{APP}/.run/prefect"}  # the image's PREFECT_HOME
    assert "PREFECT_HOME=/app/.run/prefect" in DOCKERFILE.read_text()
    assert set(compose()["volumes"]) == {"postgres", "prefect-home", "data", "artifacts", "workspace"}


def test_the_dask_cluster_serves_score_and_scales() -> None:
    """The Prefect worker's flows score on the compose network's scheduler; workers scale with --scale (no
    fixed name, no published port) and see the warehouse and models at the paths the flows use."""
    scheduler = program_args(service("dask-scheduler")["command"])
    worker = program_args(service("dask-worker")["command"])
    assert scheduler[:2] == ["dask", "scheduler"] and value_of(scheduler, "--host") == "0.0.0.0"
    port = value_of(scheduler, "--port")
    address = f"tcp://dask-scheduler:{port}"
    assert worker[:3] == ["dask", "worker", address]
    assert value_of(worker, "--nthreads") == "1"
    environment = service("worker")["environment"]
    assert environment["SCOREHOUSE_COMPUTE__ADDRESS"] == address
    assert environment["SCOREHOUSE_COMPUTE__ENGINE"] == env_example()["SCOREHOUSE_COMPUTE__ENGINE"] == "dask"
    assert service("worker")["depends_on"]["dask-scheduler"]["condition"] == "service_healthy"
    for name in ("dask-scheduler", "dask-worker"):
        assert "container_name" not in service(name), f"{name} cannot be scaled with a fixed name"
    assert mounts("dask-worker") == {"data": f"{APP}/data", "artifacts": f"{APP}/artifacts"}
    # The programs exist in the image's environment (the same lock as here).
    assert shutil.which("dask", path=str(REPO_ROOT / ".venv" / "bin"))


def test_the_image() -> None:
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert "libgomp1" in dockerfile  # XGBoost's OpenMP runtime, absent from slim images
    assert re.search(rf"^WORKDIR {APP}$", dockerfile, re.MULTILINE)
    assert "uv sync --frozen --no-dev" in dockerfile
    apps = [name for name, body in compose()["services"].items() if name != "postgres"]
    assert {service(name)["build"] for name in apps} == {"."}
    assert len({service(name)["image"] for name in apps}) == 1
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert {".env", ".venv", ".git", ".run"} <= set(ignored)


def _docker_compose() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    found = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    return [docker, "compose"] if found.returncode == 0 else None


@pytest.mark.skipif(_docker_compose() is None, reason="no `docker compose` client here (the plugin is absent)")
def test_docker_compose_config_accepts_the_file() -> None:
    command = _docker_compose()
    assert command is not None
    done = subprocess.run(
        [*command, "--file", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config", "--quiet"],
        cwd=REPO_ROOT,
        env=os.environ | TEST_ONLY,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
