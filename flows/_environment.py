"""Quiet, offline defaults for Prefect, applied by the processes Scorehouse starts (the CLI, the tests, the
benchmark) before Prefect is imported: Prefect reads most of them once, at import.

Nothing here runs at import: `import flows` leaves the environment as it found it. Each value is a
default: a variable already set (a server's API URL, a test's PREFECT_HOME) wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Prefect's temporary API gives its server 20 s to start. Measured here: 17-22 s on an idle machine, so any
# other load made the first flow of a command fail. Waiting longer costs nothing when the server is quick.
EPHEMERAL_STARTUP_TIMEOUT_S = 180


def defaults() -> dict[str, str]:
    """The variables and the values they get when they are not set."""
    return {
        "PREFECT_HOME": str(REPO_ROOT / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(EPHEMERAL_STARTUP_TIMEOUT_S),
        "DO_NOT_TRACK": "1",
    }


def apply_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set every default that is not set yet in `environ` (the process's environment); returns those set."""
    target = os.environ if environ is None else environ
    applied = {name: value for name, value in defaults().items() if name not in target}
    target.update(applied)
    return applied
