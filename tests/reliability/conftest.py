"""The reliability suite runs the real flows in this process against the session's temporary Prefect server,
and reports its crash trials at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability import _summary


@pytest.fixture(scope="session", autouse=True)
def _prefect(prefect_harness: None) -> Iterator[None]:
    yield


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _summary.LINES:
        terminalreporter.section("reliability: crash trials")
        for line in _summary.LINES:
            terminalreporter.write_line(line)
