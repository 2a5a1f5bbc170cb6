"""The crash-trial driver: a flow's own code in a process the reliability tests kill with SIGKILL.

Prefect's per-process start costs about 20 s here, so most trials run each flow's body (`flow.fn`)
with its tasks called directly (`task.fn`) and Prefect's run logger and artifacts replaced by plain
ones: the same reads, validation, scoring, model saves and commits, in the same order, without the
engine. The tests start `run` in a process forked from a warm fork server (imports paid once).
`python -m tests.reliability._driver --real ...` runs the real Prefect flow instead, against the
server named by PREFECT_API_URL.

Hooks, installed in the trial process only, journal each step of the commit path (one JSON line per
event, appended with O_APPEND so a kill loses nothing written before it) and can kill the process
with SIGKILL at an exact point. A kill spec is `<hook>:<n>:<phase>`:

- `delta:N:mid`        inside the Nth Delta write (an append, a MERGE, a compaction, a vacuum, a checkpoint):
                       a timer fires SIGKILL a few milliseconds after delta-rs started it, while it writes
                       data files or its log entry
- `commit:N:before`    just before the Nth warehouse commit (nothing of it written)
- `commit:N:after`     just after the Nth commit landed, before anything else runs
- `replace:N:before`   just before the Nth `os.replace` into the project (a model folder, the catalog)
- `replace:N:after`    just after it
- `dump:N:mid`         half of the Nth joblib model file written, then SIGKILL (during a model save)
- `save:N:after`       after the Nth model version folder is in place, before its registry rows

The journal also records each commit's intent (table, batch id, rows), so the tests can check that
every batch a reader sees is whole.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import deltalake
import deltalake.table
import joblib
from prefect.tasks import Task

import flows.feedback
import flows.ingest
import flows.maintain
import flows.registry
import flows.retrain
import flows.score
import flows.train
import warehouse.maintenance
import warehouse.scoring
import warehouse.store
from warehouse.store import Warehouse

FLOW_MODULES: dict[str, tuple[ModuleType, str]] = {
    "ingest": (flows.ingest, "ingest"),
    "score": (flows.score, "score"),
    "collect_feedback": (flows.feedback, "collect_feedback"),
    "train": (flows.train, "train"),
    "retrain": (flows.retrain, "retrain"),
    "maintain": (flows.maintain, "maintain"),
}
# A kill "inside a Delta write" fires this long after delta-rs started it (it writes data files, then its log entry).
DELTA_KILL_AFTER_S = 0.004


class _Journal:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def __call__(self, event: str, **detail: Any) -> None:
        line = json.dumps({"e": event, "t": time.monotonic(), **detail}, default=str) + "\n"
        os.write(self.fd, line.encode())


def _die(journal: _Journal, spec: str) -> None:
    journal("kill", at=spec)
    os.kill(os.getpid(), signal.SIGKILL)


def install_hooks(journal_path: str, kill: str | None, root: Path) -> _Journal:
    """Journal (and, per `kill`, die at) every Parquet write, rename, model dump and commit in this process."""
    journal = _Journal(journal_path)
    hook, number, phase = [*kill.split(":"), "", "", ""][:3] if kill else ("", "0", "")
    target = int(number or 0)
    calls: Counter[str] = Counter()
    inside = str(root.resolve())

    def due(name: str, when: str) -> bool:
        return hook == name and calls[name] == target and phase == when

    real_commit = Warehouse.commit

    def commit(self: Warehouse, table: str, batch: str, rows: Any, **kwargs: Any) -> bool:
        calls["commit"] += 1
        journal("commit", n=calls["commit"], table=table, batch=batch, rows=rows.num_rows)
        if due("commit", "before"):
            _die(journal, kill or "")
        done = real_commit(self, table, batch, rows, **kwargs)
        journal("committed", n=calls["commit"], table=table, batch=batch, new=done)
        if due("commit", "after"):
            _die(journal, kill or "")
        return done

    def delta_write(name: str, real: Any) -> Any:
        """`real` (a delta-rs call that writes) journalled, and killed inside when it is the one due."""

        def write(*args: Any, **kwargs: Any) -> Any:
            calls["delta"] += 1
            journal("write", n=calls["delta"], what=name)
            if due("delta", "mid"):
                timer = threading.Timer(DELTA_KILL_AFTER_S, _die, args=(journal, kill or ""))
                timer.daemon = True
                timer.start()
            result = real(*args, **kwargs)
            journal("written", n=calls["delta"])
            return result

        return write

    real_replace = os.replace

    def replace(source: Any, destination: Any, *args: Any, **kwargs: Any) -> None:
        if not str(Path(destination).resolve()).startswith(inside):
            real_replace(source, destination, *args, **kwargs)  # not the project's (Prefect's own files)
            return
        calls["replace"] += 1
        journal("replace", n=calls["replace"], source=str(source), destination=str(destination))
        if due("replace", "before"):
            _die(journal, kill or "")
        real_replace(source, destination, *args, **kwargs)
        journal("replaced", n=calls["replace"])
        if due("replace", "after"):
            _die(journal, kill or "")

    real_dump = joblib.dump

    def dump(value: Any, filename: Any, *args: Any, **kwargs: Any) -> Any:
        calls["dump"] += 1
        journal("dump", n=calls["dump"], path=str(filename))
        if due("dump", "mid"):
            buffer = io.BytesIO()
            real_dump(value, buffer, *args, **kwargs)
            data = buffer.getvalue()
            with open(filename, "wb") as sink:
                sink.write(data[: len(data) // 2])
            _die(journal, kill or "")
        result = real_dump(value, filename, *args, **kwargs)
        journal("dumped", n=calls["dump"])
        return result

    real_save = flows.registry.save_version

    def save_version(model: Any, folder: Path, metadata: dict[str, Any]) -> dict[str, str]:
        calls["save"] += 1
        journal("save", n=calls["save"], version=model.version)
        hashes = real_save(model, folder, metadata)
        journal("saved", n=calls["save"], version=model.version)
        if due("save", "after"):
            _die(journal, kill or "")
        return hashes

    Warehouse.commit = commit  # type: ignore[method-assign]
    writer = delta_write("append", deltalake.write_deltalake)
    for module in (warehouse.store, warehouse.scoring):
        module.write_deltalake = writer  # type: ignore[attr-defined]
    table_merger = deltalake.table.TableMerger
    table_merger.execute = delta_write("merge", table_merger.execute)  # type: ignore[method-assign]
    optimizer = deltalake.table.TableOptimizer
    optimizer.compact = delta_write("compact", optimizer.compact)  # type: ignore[method-assign]
    delta_table = deltalake.DeltaTable
    delta_table.vacuum = delta_write("vacuum", delta_table.vacuum)  # type: ignore[method-assign]
    delta_table.create_checkpoint = delta_write("checkpoint", delta_table.create_checkpoint)  # type: ignore[method-assign]
    os.replace = replace
    joblib.dump = dump
    flows.registry.save_version = save_version  # type: ignore[assignment]
    return journal


class Submitted:
    """A task's function running on a thread: as much of a PrefectFuture as the flows use."""

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self._future = future

    def result(self) -> Any:
        return self._future.result()

    def wait(self, timeout: float | None = None) -> None:
        concurrent.futures.wait([self._future], timeout)


class Direct:
    """A task without the engine: a call runs its function here, `submit` runs it on a thread (as the flow's
    thread-pool task runner does), so a flow's units still overlap."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Submitted:
        self._threads = self._threads or concurrent.futures.ThreadPoolExecutor(thread_name_prefix=self.fn.__name__)
        return Submitted(self._threads.submit(self.fn, *args, **kwargs))


def without_engine(module: ModuleType) -> None:
    """Call the module's tasks directly and log plainly: the flow's body runs without Prefect's engine."""
    for name, value in list(vars(module).items()):
        if isinstance(value, Task):
            setattr(module, name, Direct(value.fn))
    logger = logging.getLogger(f"driver.{module.__name__}")
    if hasattr(module, "get_run_logger"):
        module.get_run_logger = lambda: logger  # type: ignore[attr-defined]
    for name in ("create_markdown_artifact", "create_table_artifact"):
        if hasattr(module, name):
            setattr(module, name, lambda *args, **kwargs: None)


def run(flow: str, config: str, journal_path: str, kill: str | None = None, real: bool = False) -> None:
    """Run `flow` on the project of `config` with the hooks; the tests start this in a process they kill."""
    journal = install_hooks(journal_path, kill, Path(config).parent)
    module, name = FLOW_MODULES[flow]
    if not real:
        for each, _ in FLOW_MODULES.values():
            without_engine(each)
    entry = getattr(module, name)
    journal("start", flow=flow, kill=kill, real=real, pid=os.getpid())
    try:
        result = entry(config) if real else entry.fn(config)
    except BaseException:
        journal("error", traceback=traceback.format_exc())
        raise
    journal("done", result=repr(result)[:2000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flow", choices=sorted(FLOW_MODULES))
    parser.add_argument("config")
    parser.add_argument("journal")
    parser.add_argument("--kill", default=None, help="hook:n:phase")
    parser.add_argument("--real", action="store_true", help="the real Prefect flow (needs PREFECT_API_URL)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run(args.flow, args.config, args.journal, args.kill, real=args.real)


if __name__ == "__main__":
    main()
