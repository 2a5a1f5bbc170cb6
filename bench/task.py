"""One measured step of the benchmark, in its own process so that its peak memory is its own.

python -m bench.task STEP[+STEP...] CONFIG  ->  one JSON line: {"seconds": {step: s}, "rss_mb": ...}
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from flows import _environment

_environment.apply_defaults()  # Prefect defaults before Prefect is imported

from flows.feedback import collect_feedback  # noqa: E402
from flows.ingest import ingest  # noqa: E402
from flows.monitor import monitor  # noqa: E402
from flows.runtime import without_heartbeats  # noqa: E402
from flows.score import score  # noqa: E402
from flows.train import train  # noqa: E402

STEPS: dict[str, Callable[[str], Any]] = {
    "train": train,
    "ingest": ingest,
    "score": score,
    "feedback": collect_feedback,
    "monitor": monitor,
}


def main() -> None:
    steps, config = sys.argv[1].split("+"), sys.argv[2]
    with without_heartbeats():  # as the CLI runs flows
        measure(steps, config)


def measure(steps: list[str], config: str) -> None:
    train(config)  # trains once; later a no-op that starts Prefect's API before anything is timed
    seconds = {}
    for step in steps:
        start = time.perf_counter()
        STEPS[step](config)
        seconds[step] = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss_mb}))


if __name__ == "__main__":
    main()
