"""Dashboard tests: the app pointed at a private catalog through `SCOREHOUSE_CATALOG`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


@pytest.fixture
def open_app(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], AppTest]:
    """Start the app (not yet run) on a catalog; pages are reached with `switch_page`."""
    for name in ("PREFECT_UI_URL", "PREFECT_API_URL"):  # no link to a Prefect UI unless the test sets one
        monkeypatch.delenv(name, raising=False)

    def start(catalog: Path) -> AppTest:
        monkeypatch.setenv("SCOREHOUSE_CATALOG", str(catalog))
        return AppTest.from_file(str(APP), default_timeout=30)

    return start
