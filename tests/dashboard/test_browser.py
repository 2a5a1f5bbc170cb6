"""The dashboard in a real browser, over a warehouse the real flows filled.

`streamlit run` serves the app on loopback, on a project where only the first model was trained.
A scoring cycle (the real flows) runs while a browser keeps reloading the dashboard: both succeed,
and the new records appear without a restart. Then Debian's Chromium (driven by Playwright, never a
downloaded browser) opens every page, waits until the data is rendered, checks the numbers against
the warehouse and saves a screenshot in tests/output/dashboard/; meanwhile no file of the project
may change: the dashboard is read-only. Last, `evidently ui` serves the monitoring workspace and the
browser opens the project's dashboard (its panels, defined in code) and saves a screenshot of it too.
"""

from __future__ import annotations

import csv
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from flows.cycle import scoring_cycle
from flows.train import train
from pipeline import simulate
from tests.conftest import REPO_ROOT, repo_config_document, write_toml
from tests.flows.conftest import Project, arrivals, sample
from warehouse.catalog import catalog_path

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
APP = REPO_ROOT / "dashboard" / "app.py"
OUTPUT = REPO_ROOT / "tests" / "output" / "dashboard"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000
ARRIVALS = (4000, 300)  # the first row of the sample after the reference slice, and how many arrive


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Project:
    """A project whose first model is trained; nothing arrived yet. Retraining is switched off: this
    test is about reading, not about the retrain decision."""
    folder = tmp_path_factory.mktemp("browser") / "project"
    document = repo_config_document(chunk_rows=500)
    document["retrain"] = {"every_new_labels": 1_000_000, "on_drift": False, "on_quality_drop": False}
    project = Project(folder=folder, config_path=write_toml(folder / "scorehouse.toml", document))
    train(project.config)
    return project


def drop_arrivals_and_their_labels(project: Project) -> int:
    """The next day's loans, and their outcomes (collected in the same cycle, so monitoring has labels)."""
    start, rows = ARRIVALS
    project.drop_csv(arrivals(rows, start=start), "day-1.csv")
    labels = simulate.labels_file(sample().iloc[start : start + rows], project.settings.dataset, date(2026, 1, 2))
    project.settings.feedback_dir.mkdir(parents=True, exist_ok=True)
    labels.to_csv(project.settings.feedback_dir / "day-1-labels.csv", index=False)
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"streamlit exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"streamlit did not answer within {timeout} s:\n{log.read_text()}")


@contextmanager
def dashboard(catalog: Path, cwd: Path, log: Path) -> Iterator[str]:
    """`streamlit run` on a free loopback port, with the flags `make dashboard` uses; answers at most 1 s old."""
    port = free_port()
    env = {**os.environ, "SCOREHOUSE_CATALOG": str(catalog), "SCOREHOUSE_DASHBOARD_TTL_SECONDS": "1"}
    command = [
        *(sys.executable, "-m", "streamlit", "run", str(APP)),
        *("--server.headless", "true", "--browser.gatherUsageStats", "false"),
        *("--server.address", "127.0.0.1", "--server.port", str(port), "--client.toolbarMode", "viewer"),
    ]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A headless Debian Chromium with a fresh profile; yields a Playwright browser context."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 2200},
            accept_downloads=True,
        )
        try:
            yield context
        finally:
            context.close()


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and folder under `folder`: inode, size, modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
    }


def visit(page: Any, url: str, *texts: str) -> None:
    """Open `url` and wait until every text is rendered and the script has finished; never a traceback."""
    page.goto(url)
    for text in texts:
        page.get_by_text(text, exact=False).first.wait_for(timeout=WAIT_MS)
    page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=WAIT_MS)
    assert page.locator("[data-testid=stException]").count() == 0, page.locator(
        "[data-testid=stException]"
    ).all_inner_texts()


def metric(page: Any, label: str) -> str:
    return str(page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue").inner_text())


def shoot(page: Any, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


@dataclass(frozen=True)
class Expected:
    """What the pages must show, read from the warehouse before the browser starts."""

    records: int
    predictions: int
    champion: str
    record_id: str
    score: float
    label: str

    @classmethod
    def of(cls, project: Project) -> Expected:
        last = project.query("SELECT record_id, score, label FROM predictions ORDER BY record_id DESC LIMIT 1").iloc[0]
        return cls(
            records=project.scalar("SELECT count(*) FROM records"),
            predictions=project.scalar("SELECT count(*) FROM predictions"),
            champion=project.scalar("SELECT model_version FROM champion"),
            record_id=str(last["record_id"]),
            score=float(last["score"]),
            label=str(last["label"]),
        )


def browse_every_page(page: Any, url: str, expected: Expected) -> None:
    records, predictions, champion = expected.records, expected.predictions, expected.champion
    record_id, score, label = expected.record_id, expected.score, expected.label

    visit(page, url, "Scorehouse", "Last alert", "Quarantine")
    assert metric(page, "Records") == f"{records:,}" and metric(page, "Predictions") == f"{predictions:,}"
    page.get_by_text(f"{champion} in production since").wait_for(timeout=WAIT_MS)
    shoot(page, "overview")

    visit(page, f"{url}/predictions", "Matching records", "Page 1 of", "How the labelled ones did")
    assert metric(page, "Matching records") == f"{records:,}"  # one row per record: its current prediction
    page.get_by_text("Dashed red: the decision threshold").wait_for(timeout=WAIT_MS)
    page.get_by_label("Record id starts with").fill(record_id)
    page.get_by_label("Record id starts with").press("Enter")
    # The rerun for the filter must be over before the click: a button of an earlier run points to a
    # file that run's end discarded.
    page.get_by_text("The file holds all 1 matching records.").wait_for(timeout=WAIT_MS)
    page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=WAIT_MS)
    assert metric(page, "Matching records") == "1"
    with page.expect_download(timeout=WAIT_MS) as download:
        page.get_by_text("Download the filtered rows as CSV").click()
    saved = OUTPUT / "predictions.csv"
    download.value.save_as(saved)
    rows = list(csv.DictReader(saved.open()))
    assert [(r["record_id"], r["predicted_label"]) for r in rows] == [(record_id, label)]
    shoot(page, "predictions")

    visit(page, f"{url}/record?record_id={record_id}", "Every prediction made for it", "Its features, as ingested")
    page.get_by_text(f"scored it {score:.4f}: predicted {label}").wait_for(timeout=WAIT_MS)
    # Its label (labelled 2026-01-02) was known before the cycle scored it: that prediction is not judged.
    page.get_by_text("every prediction for it was made after the label was known").wait_for(timeout=WAIT_MS)
    page.get_by_text("Why this score").wait_for(timeout=WAIT_MS)  # its explanation, read from the warehouse
    page.get_by_text(re.compile("raised the risk|No feature raised")).first.wait_for(timeout=WAIT_MS)
    shoot(page, "record")

    visit(page, f"{url}/monitoring", "Latest report", "Drift share", "Evidently reports", "Show the report here")
    page.get_by_text("the normed Wasserstein distance (in hold-out standard deviations)").wait_for(timeout=WAIT_MS)
    page.get_by_text("Show the report here").click()
    report = page.frame_locator("iframe[title^='Evidently report']")
    report.locator("body").get_by_text("Drift", exact=False).first.wait_for(timeout=WAIT_MS)
    shoot(page, "monitoring")

    visit(page, f"{url}/models", "Which version was champion when", "Decisions", "do not compare versions")
    page.get_by_text(f"Champion now: {champion}").wait_for(timeout=WAIT_MS)
    shoot(page, "models")


@contextmanager
def evidently_ui(workspace: Path, log: Path) -> Iterator[str]:
    """`evidently ui` over the monitoring workspace on a free loopback port, as `make reports-ui` runs it."""
    port = free_port()
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    command = [
        *(str(Path(sys.executable).parent / "evidently"), "ui", "--workspace", str(workspace)),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, f"evidently ui exited with {process.returncode}:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError(f"evidently ui did not answer within 120 s:\n{log.read_text()}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def browse_the_evidently_dashboard(page: Any, url: str, project: Project) -> None:
    """The monitoring project opens on its panels (not "Please add a monitoring panel"), named after the dataset."""
    from flows.monitor import monitoring_project
    from pipeline.workspace import PANELS, project_id

    name = monitoring_project(project.settings)
    page.goto(f"{url}/projects/{project_id(name)}")
    for title, _, _ in PANELS[:3]:
        page.get_by_text(title, exact=True).first.wait_for(timeout=WAIT_MS * 2)
    assert page.get_by_text("Please add a monitoring panel").count() == 0
    page.wait_for_timeout(3000)  # the plots draw after their data arrives
    shoot(page, "evidently-dashboard")


class Visitor(threading.Thread):
    """A second browser that reloads the overview every second until told to stop, noting the records it
    saw (once a second: enough to hold the dashboard busy, without taking the cores the flow needs)."""

    def __init__(self, url: str, profile: Path) -> None:
        super().__init__(daemon=True)
        self.url, self.profile = url, profile
        self.stop, self.ready = threading.Event(), threading.Event()
        self.seen: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with chromium(self.profile) as context:
                page = context.new_page()
                while not self.stop.is_set() or not self.seen:
                    visit(page, self.url, "Records", "Last batch")
                    self.seen.append(metric(page, "Records"))
                    self.ready.set()
                    self.stop.wait(1.0)
                shoot(page, "overview-after-cycle")  # the visitor's last view
        except BaseException as error:
            self.error = error
            self.ready.set()


def test_a_cycle_while_the_dashboard_is_open_then_every_page_read_only(project: Project, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    catalog = catalog_path(project.store())
    with dashboard(catalog, cwd=project.folder, log=tmp_path / "streamlit.log") as url:
        visitor = Visitor(url, tmp_path / "visitor-profile")
        visitor.start()
        assert visitor.ready.wait(timeout=60) and visitor.error is None, visitor.error
        rows = drop_arrivals_and_their_labels(project)
        report = scoring_cycle(project.config)  # the real flows, while the dashboard holds the catalog open
        deadline = time.monotonic() + 30
        while f"{rows:,}" not in visitor.seen and visitor.error is None and time.monotonic() < deadline:
            time.sleep(0.2)
        visitor.stop.set()
        visitor.join(timeout=60)
        assert report.scored.scored == rows and report.labels == rows
        assert visitor.error is None, visitor.error
        assert visitor.seen[0] == "0" and visitor.seen[-1] == f"{rows:,}", visitor.seen  # no restart needed

        expected = Expected.of(project)
        before = snapshot(project.folder)
        with chromium(tmp_path / "profile") as context:
            browse_every_page(context.new_page(), url, expected)
        assert snapshot(project.folder) == before, "browsing the dashboard changed files of the project"
    workspace = project.settings.reports_dir / "evidently"
    with evidently_ui(workspace, tmp_path / "evidently.log") as reports, chromium(tmp_path / "ev-profile") as context:
        browse_the_evidently_dashboard(context.new_page(), reports, project)
    assert "Traceback" not in (tmp_path / "streamlit.log").read_text()


def test_hostile_values_render_no_link_or_image_and_nothing_is_fetched_from_outside(tmp_path: Path) -> None:
    """Injection strings in an id (from the link and from the warehouse), a file name and a reason: the page
    shows them as text, renders no link or image to the outside host, and the browser asks no host but
    the dashboard for anything (icons and fonts included): the dashboard works offline."""
    from urllib.parse import quote, urlparse

    from tests.dashboard.tiny_warehouse import EVIL, HOSTILE_ID, hostile_warehouse

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    catalog = hostile_warehouse(tmp_path / "hostile")
    with dashboard(catalog, tmp_path, tmp_path / "streamlit.log") as url, chromium(tmp_path / "profile") as browser:
        hosts: set[str] = set()
        browser.on("request", lambda request: hosts.add(urlparse(request.url).hostname or request.url))
        page = browser.new_page()
        link = quote(f"zz`]({EVIL}) ![p]({EVIL}/p.png)")
        for address, text in [
            (url, "Last batch"),
            (f"{url}/record?record_id={quote(HOSTILE_ID)}", "0.5000"),
            (f"{url}/record?record_id={link}", "ids are matched exactly"),
            (f"{url}/models", "Decisions"),
        ]:
            visit(page, address, text)
            # Links stay on the dashboard (a link to a record page carries the hostile id in its query).
            targets = page.eval_on_selector_all("a[href]", "anchors => anchors.map(a => a.href)")
            offsite = [t for t in targets if urlparse(t).hostname not in ("127.0.0.1", None)]
            assert offsite == [], address
            assert page.locator("img[src*='evil.example']").count() == 0, address
            if "models" not in address:  # the models page shows reasons in a table (drawn, not text)
                assert "evil.example" in page.inner_text("body"), f"{address}: the value is shown, as text"
        assert hosts <= {"127.0.0.1"}, f"requests left the machine: {sorted(hosts - {'127.0.0.1'})}"
