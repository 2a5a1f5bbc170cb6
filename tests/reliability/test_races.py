"""Many writers (invariant 9): two runs of real flows at the same moment, in two processes, several times each.

Each race starts from a copy of a prepared project (a stage: built once, by the same flows). Two worker
processes (spawned once for the module, each with the flows imported) run the flows' own code without
Prefect's engine, as tests/reliability/_driver.py does; a barrier releases both runs together. After
every race a read-only reader must see no duplicate, no lost row and one version per number, and the
work must be done exactly once. A losing run may stop with a clear message (`Conflict`, `CommitError`,
"run again"), never with any other error.
"""

from __future__ import annotations

import multiprocessing
import shutil
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import flows.feedback
import flows.monitor
import flows.score
from flows.drop_folder import scan
from flows.feedback import collect_feedback
from flows.runtime import load_champion
from flows.score import score
from pipeline import simulate
from pipeline.monitoring import MonitorResult
from tests.flows.conftest import Project, arrivals, sample
from tests.reliability import _summary
from tests.reliability._invariants import Snapshot, assert_consistent, snapshot
from tests.reliability._projects import quick_project
from warehouse import scoring
from warehouse.scoring import Unit
from warehouse.store import Conflict

CHUNK = 50  # rows per ingest block and per scoring unit: many commits per run, many chances to interleave
REPEATS = 3
LABEL_FILES = ("labels-1.csv", "labels-2.csv")
# How a losing run may stop: a message that says it lost a race and what to do.
CLEAR_STOPS = ("warehouse.store.Conflict", "warehouse.store.CommitError", "run again")


# ------------------------------------------------------------------------------------------- workers


def _run_flows(jobs: Any, results: Any, barrier: Any) -> None:
    """A worker process: import the flows once, then for each job wait at the barrier and run the flow body."""
    import tests.conftest
    from tests.reliability import _driver

    for module, _ in _driver.FLOW_MODULES.values():
        _driver.without_engine(module)
    results.put(("ready", ""))
    try:
        while (job := jobs.get()) is not None:
            flow, config, kwargs, together = job
            module, name = _driver.FLOW_MODULES[flow]
            if together:
                barrier.wait(timeout=300)
            try:
                results.put(("ok", repr(getattr(module, name).fn(config, **kwargs))[:500]))
            except BaseException:
                results.put(("error", traceback.format_exc()))
    finally:
        shutil.rmtree(tests.conftest._PREFECT_HOME, ignore_errors=True)  # this process's own Prefect home


Run = tuple[str, str, dict[str, Any]]  # flow, config, keyword arguments


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str

    @property
    def clear_stop(self) -> bool:
        """A run that stopped because it lost a race, saying so (the last line of its traceback)."""
        last = self.detail.strip().splitlines()[-1] if self.detail.strip() else ""
        return not self.ok and any(words in last for words in CLEAR_STOPS)


@dataclass
class Workers:
    """Two processes that run two flows at the same moment."""

    jobs: list[Any]
    results: list[Any]
    processes: list[SpawnProcess]
    ready: bool = False

    def _wait_until_ready(self) -> None:
        if not self.ready:
            assert [r.get(timeout=300)[0] for r in self.results] == ["ready", "ready"]
            self.ready = True

    def race(self, first: Run, second: Run) -> list[Outcome]:
        """Both runs, released together."""
        self._wait_until_ready()
        self.jobs[0].put((*first, True))
        self.jobs[1].put((*second, True))
        return [Outcome(kind == "ok", detail) for kind, detail in (r.get(timeout=600) for r in self.results)]

    def alone(self, flow: str, config: str) -> None:
        """One run of `flow` in the first worker, to prepare a stage (no race)."""
        self._wait_until_ready()
        self.jobs[0].put((flow, config, {}, False))
        kind, detail = self.results[0].get(timeout=600)
        assert kind == "ok", detail


@pytest.fixture(scope="module")
def workers() -> Iterator[Workers]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    jobs, results = [context.Queue(), context.Queue()], [context.Queue(), context.Queue()]
    processes = [context.Process(target=_run_flows, args=(jobs[i], results[i], barrier), daemon=True) for i in (0, 1)]
    for process in processes:
        process.start()  # they import the flows while the stages are built
    try:
        yield Workers(jobs=jobs, results=results, processes=processes)
    finally:
        for queue in jobs:
            queue.put(None)
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()


# -------------------------------------------------------------------------------------------- stages


@dataclass
class Tally:
    """Every race run: its kind and how each of the two runs ended."""

    races: list[tuple[str, str]] = field(default_factory=list)

    def add(self, kind: str, outcomes: list[Outcome]) -> None:
        ends = ", ".join(
            "done" if o.ok else ("stopped (lost the race)" if o.clear_stop else "crashed") for o in outcomes
        )
        self.races.append((kind, ends))


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    seen = Tally()
    yield seen
    kinds = Counter(kind for kind, _ in seen.races)
    lines = [f"two-writer races: {len(seen.races)} ({', '.join(f'{k} {n}' for k, n in kinds.items())})"]
    lines += [f"  {kind:<40} {ends}" for kind, ends in seen.races]
    print("\n" + "\n".join(lines))
    _summary.LINES.extend(lines)


def _labels(project: Project) -> None:
    folder = project.settings.feedback_dir
    folder.mkdir(parents=True, exist_ok=True)
    day = pd.Timestamp("2026-11-20").date()
    for name, (start, stop) in zip(LABEL_FILES, ((4000, 4120), (4120, 4200)), strict=True):
        rows = sample().iloc[start:stop]
        ghosts = rows.iloc[:2].assign(loan_id=[f"{name}-ghost-1", f"{name}-ghost-2"])  # rejected: unknown ids
        simulate.labels_file(pd.concat([rows, ghosts]), project.settings.dataset, day).to_csv(
            folder / name, index=False
        )


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory, workers: Workers) -> dict[str, Path]:
    """Copies of one project before each race's flows, built by the flows' own code in a worker."""
    root = tmp_path_factory.mktemp("races")
    project = quick_project(root / "p0", chunk_rows=CHUNK)
    out: dict[str, Path] = {}

    def freeze(name: str) -> None:
        out[name] = root / f"stage-{name}"
        shutil.copytree(project.folder, out[name])

    freeze("empty")
    workers.alone("train", project.config)
    freeze("trained")
    project.drop_csv(arrivals(300), "a.csv")
    workers.alone("ingest", project.config)
    freeze("ingested")
    workers.alone("score", project.config)
    _labels(project)
    freeze("labelled")
    workers.alone("collect_feedback", project.config)
    freeze("collected")
    project.drop_csv(arrivals(200, start=4300), "b.csv")
    workers.alone("ingest", project.config)
    freeze("scored-then-ingested")
    counts = snapshot(project).counts
    assert (counts["records"], counts["predictions"], counts["feedback"]) == (500, 300, 200), counts
    return out


def clone(stage: Path, folder: Path) -> Project:
    shutil.copytree(stage, folder)
    project = Project(folder=folder, config_path=folder / "scorehouse.toml")
    project.store()  # the catalog's views hold absolute paths: rebuilt for the copy
    return project


def second_config(project: Project, name: str, **sections: dict[str, Any]) -> str:
    """Another config of the same project (same warehouse and models), with some settings changed."""
    return quick_project(project.folder, chunk_rows=CHUNK, config_name=name, **sections).config


def run_races(
    kind: str,
    stage: Path,
    tmp_path: Path,
    workers: Workers,
    tally: Tally,
    configure: Callable[[Project], tuple[Run, Run]],
    check: Callable[[Project, Snapshot, list[Outcome]], None],
) -> None:
    """REPEATS races of `kind`, each on a fresh copy of `stage`; `configure` names the two runs, `check` what
    must hold after both ended (besides what every reader must see, checked here)."""
    for repeat in range(REPEATS):
        project = clone(stage, tmp_path / f"race-{repeat}")
        before = snapshot(project)
        first, second = configure(project)
        outcomes = workers.race(first, second)
        tally.add(kind, outcomes)
        crashes = [o.detail for o in outcomes if not o.ok and not o.clear_stop]
        if not crashes:  # a crashed run may leave work for the next run (predictions_current behind)
            assert any(o.ok for o in outcomes), f"{kind}, race {repeat}: neither run finished"
            assert_consistent(project, before, None, settled=True)
            check(project, before, outcomes)
        else:
            assert_consistent(project, before, None)  # what a reader sees is whole and unique all the same
        assert not crashes, f"{kind}, race {repeat}: a run crashed:\n{crashes[0][-3000:]}"
        shutil.rmtree(project.folder)


def scalar(project: Project, sql: str) -> Any:
    return project.scalar(sql)


# -------------------------------------------------------------------------------------------- races


def every_record_scored_once_by_the_champion(project: Project, before: Snapshot, outcomes: list[Outcome]) -> None:
    champion = scalar(project, "SELECT model_version FROM champion")
    records = scalar(project, "SELECT count(*) FROM records")
    assert records == before.counts["records"] > 0
    by_champion = scalar(project, f"SELECT count(*) FROM predictions WHERE model_version = '{champion}'")
    distinct = scalar(project, f"SELECT count(DISTINCT record_id) FROM predictions WHERE model_version = '{champion}'")
    assert (by_champion, distinct) == (records, records), f"{by_champion} predictions for {records} records"
    assert scalar(project, "SELECT count(*) FROM records ANTI JOIN predictions USING (record_id)") == 0
    assert scalar(project, "SELECT count(*) FROM predictions_current") == records


def test_two_score_runs_of_the_first_pass_score_every_record_exactly_once(
    stages: dict[str, Path], workers: Workers, tally: Tally, tmp_path: Path
) -> None:
    """The champion has scored nothing yet (no watermark): both runs compare records with predictions and
    commit chunk after chunk; the log lets each record be scored once."""
    run_races(
        "score x2 (first pass)",
        stages["ingested"],
        tmp_path,
        workers,
        tally,
        lambda p: (("score", p.config, {}), ("score", p.config, {})),
        every_record_scored_once_by_the_champion,
    )


def test_two_score_runs_after_new_records_score_each_new_record_exactly_once(
    stages: dict[str, Path], workers: Workers, tally: Tally, tmp_path: Path
) -> None:
    """The champion scored up to a watermark; 200 records arrived since: both runs plan from the change feed."""
    run_races(
        "score x2 (from the watermark)",
        stages["scored-then-ingested"],
        tmp_path,
        workers,
        tally,
        lambda p: (("score", p.config, {}), ("score", p.config, {})),
        every_record_scored_once_by_the_champion,
    )


def test_a_score_unit_planned_before_another_run_scored_conflicts_instead_of_landing(
    stages: dict[str, Path], tmp_path: Path
) -> None:
    """The first-pass race made exact: this run planned its units, then another run scored every record; this
    run's first unit (grouped differently from the other run's chunks) must raise Conflict, not land again."""
    project = clone(stages["ingested"], tmp_path / "project")
    store = project.store()
    model = load_champion(store, project.settings)
    base = store.version("predictions")  # the snapshot the plan is read at
    units = scoring.pending_units(store, model.version, model.feature_names, CHUNK)
    planned = next(units)
    del units  # ends the plan and its DuckDB session
    score(project.config)  # the other run, through the real flow
    regrouped = Unit(rows=planned.rows.slice(0, CHUNK // 2), watermark=planned.watermark)

    landed = True
    try:
        table = flows.score.score_unit.fn(store, model, regrouped, datetime.now(UTC), 1, None)
        flows.score.commit_unit.fn(store, model, regrouped, table, datetime.now(UTC), 1, base)
    except Conflict:
        landed = False
    duplicates = project.scalar("SELECT count(*) - count(DISTINCT record_id) FROM predictions")
    assert (landed, duplicates) == (False, 0), f"the stale unit landed: {duplicates} records scored twice"


def test_two_monitors_deciding_at_once_open_one_episode_per_alert(stages: dict[str, Path], tmp_path: Path) -> None:
    """Two monitors of different windows both find drift while no episode is open. The one committing second
    decided on a read the first made stale: that commit conflicts, and deciding again opens nothing."""
    project = clone(stages["ingested"], tmp_path / "project")
    store, settings = project.store(), project.settings
    drifting = MonitorResult(metrics=[], firing={"drift": "drift share 0.60"}, sampled=False, current_rows=100)
    now = datetime.now(UTC)

    def common(report: str) -> dict[str, Any]:
        return {"report_id": report, "window_start": now, "window_end": now, "model_version": "v1", "event_at": now}

    stale, read_at = flows.monitor.step_episodes(store, settings, drifting, "report-a", now)
    flows.monitor.decide_episodes.fn(store, settings, drifting, "report-b", now, common("report-b"))
    with pytest.raises(Conflict):
        store.commit(
            "alert_episodes",
            "report-a",
            flows.monitor.episode_rows(stale, common("report-a")),
            partition=now.date().isoformat(),
            marks=[(flows.monitor.EPISODES_CLAIM, 0)],
            read_version=read_at,
        )
    again = flows.monitor.decide_episodes.fn(store, settings, drifting, "report-a", now, common("report-a"))

    assert "opened" in [e.event for e in stale.events] and again.events == []
    assert project.scalar("SELECT count(*) FROM episodes WHERE state = 'open'") == 1


def test_two_ingest_runs_of_different_files_sharing_ids_store_each_id_once_and_lose_no_row(
    stages: dict[str, Path], workers: Workers, tally: Tally, tmp_path: Path
) -> None:
    """Two incoming folders of one warehouse, each with a file; 40 ids are in both files. Every row is stored
    or quarantined with a reason, and each id is stored once."""

    def configure(project: Project) -> tuple[Run, Run]:
        other = second_config(project, "other.toml", paths={"incoming": "data/incoming-2"})
        a, b = arrivals(150, start=4500), arrivals(150, start=4700)
        b.loc[:39, "loan_id"] = a.loc[100:139, "loan_id"].to_numpy()
        project.drop_csv(a, "a.csv")
        (project.folder / "data" / "incoming-2").mkdir(parents=True)
        b.to_csv(project.folder / "data" / "incoming-2" / "b.csv", index=False)
        return ("ingest", project.config, {}), ("ingest", other, {})

    def check(project: Project, before: Snapshot, outcomes: list[Outcome]) -> None:
        files = "('a.csv', 'b.csv')"
        stored = scalar(project, f"SELECT count(*) FROM records WHERE source_file IN {files}")
        quarantined = scalar(project, f"SELECT count(*) FROM quarantine WHERE source_file IN {files}")
        assert stored + quarantined == 300, f"300 rows in, {stored} stored + {quarantined} quarantined"
        assert stored == 260, f"{stored} stored: each of the 260 distinct ids once"
        unexplained = scalar(
            project,
            f"SELECT count(*) FROM quarantine WHERE source_file IN {files} AND (reason IS NULL OR rule IS NULL)",
        )
        assert unexplained == 0
        assert scalar(project, "SELECT count(*) - count(DISTINCT record_id) FROM records") == 0
        assert all(o.ok for o in outcomes), "neither run lost more races than it retries"

    run_races("ingest x2 (shared ids)", stages["trained"], tmp_path, workers, tally, configure, check)


def each_label_once(project: Project, before: Snapshot, outcomes: list[Outcome]) -> None:
    for name, rows in zip(LABEL_FILES, (122, 82), strict=True):
        stored = scalar(project, f"SELECT count(*) FROM feedback WHERE source_file = '{name}'")
        rejected = scalar(project, f"SELECT count(*) FROM feedback_rejects WHERE source_file = '{name}'")
        assert (stored, rejected) == (rows - 2, 2), f"{name}: {stored} stored + {rejected} rejected of {rows}"
    assert list(project.settings.feedback_dir.iterdir()) == []


def test_two_feedback_runs_on_the_same_folder_collect_each_label_once(
    stages: dict[str, Path], workers: Workers, tally: Tally, tmp_path: Path
) -> None:
    """The hourly feedback deployment overlapping the cycle's: both see the same two label files."""
    run_races(
        "collect_feedback x2 (same folder)",
        stages["labelled"],
        tmp_path,
        workers,
        tally,
        lambda p: (("collect_feedback", p.config, {}), ("collect_feedback", p.config, {})),
        each_label_once,
    )


def test_a_feedback_run_whose_file_was_moved_by_another_run_goes_on(
    stages: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overlap above, made exact: this run listed both files before the other run collected and moved them."""
    project = clone(stages["labelled"], tmp_path / "project")
    listed = scan(project.settings.feedback_dir, 0)
    assert [e.path.name for e in listed.ready] == list(LABEL_FILES)
    collect_feedback(project.config)  # the other run: collects both files and moves them aside
    monkeypatch.setattr(flows.feedback, "scan", lambda folder, settle_seconds: listed)

    collect_feedback(project.config)

    each_label_once(project, snapshot(project), [])


def one_version_per_number_and_one_champion(project: Project, before: Snapshot, outcomes: list[Outcome]) -> None:
    trained = project.query("SELECT model_version, fingerprint FROM models WHERE event = 'trained'")
    assert trained["model_version"].is_unique, trained
    assert trained["fingerprint"].is_unique, trained
    assert scalar(project, "SELECT count(*) FROM champion") == 1
    on_disk = sorted(p.name for p in project.settings.models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    registered = sorted(trained["model_version"])
    assert set(registered) <= set(on_disk)
    for unused in set(on_disk) - set(registered):  # a claimed number nobody registered holds no files
        assert not any(f.suffix == ".joblib" for f in (project.settings.models_dir / unused).iterdir()), unused


def test_two_trainings_of_an_empty_project_register_one_champion(
    stages: dict[str, Path], workers: Workers, tally: Tally, tmp_path: Path
) -> None:
    def check(project: Project, before: Snapshot, outcomes: list[Outcome]) -> None:
        one_version_per_number_and_one_champion(project, before, outcomes)
        # One version registered and promoted: the number the winner claimed (the loser's number is a gap).
        events = project.query("SELECT model_version, event FROM models ORDER BY event").to_dict("records")
        assert [e["event"] for e in events] == ["promoted", "trained"], events
        assert events[0]["model_version"] == events[1]["model_version"], events
        assert scalar(project, "SELECT count(DISTINCT batch_id) FROM reference") == 1

    run_races(
        "train x2 (empty project)",
        stages["empty"],
        tmp_path,
        workers,
        tally,
        lambda p: (("train", p.config, {}), ("train", p.config, {})),
        check,
    )


def test_two_retrains_of_the_same_data_register_one_version(
    stages: dict[str, Path], workers: Workers, tally: Tally, tmp_path: Path
) -> None:
    def check(project: Project, before: Snapshot, outcomes: list[Outcome]) -> None:
        one_version_per_number_and_one_champion(project, before, outcomes)
        assert scalar(project, "SELECT count(*) FROM models WHERE event = 'trained'") == 2  # v1 and one challenger

    run_races(
        "retrain x2 (same data)",
        stages["collected"],
        tmp_path,
        workers,
        tally,
        lambda p: (("retrain", p.config, {}), ("retrain", p.config, {})),
        check,
    )


def test_two_retrains_with_different_settings_take_different_numbers_and_leave_one_champion(
    stages: dict[str, Path], workers: Workers, tally: Tally, tmp_path: Path
) -> None:
    """Two challengers (different settings, so different fingerprints) that would both be promoted: two version
    numbers, each allocated once, and one champion; at most one of them is promoted over v1."""

    def configure(project: Project) -> tuple[Run, Run]:
        # No improvement needed: each challenger would be promoted if it were alone.
        first = second_config(project, "first.toml", retrain={"min_improvement": 0.0})
        second = second_config(project, "second.toml", retrain={"min_improvement": 0.0, "strategy": "warm_start"})
        return ("retrain", first, {"force": True}), ("retrain", second, {"force": True})

    def check(project: Project, before: Snapshot, outcomes: list[Outcome]) -> None:
        one_version_per_number_and_one_champion(project, before, outcomes)
        trained = sorted(project.query("SELECT model_version FROM models WHERE event = 'trained'")["model_version"])
        assert trained == ["v1", "v2", "v3"]
        promoted = project.query("SELECT model_version FROM models WHERE event = 'promoted' AND model_version <> 'v1'")
        retired = scalar(project, "SELECT count(*) FROM models WHERE event = 'retired' AND model_version = 'v1'")
        assert len(promoted) == retired <= 1, f"promoted over v1: {list(promoted['model_version'])}"

    run_races("retrain x2 (different settings)", stages["collected"], tmp_path, workers, tally, configure, check)


def test_maintain_while_score_runs_keeps_every_count_exact(
    stages: dict[str, Path], workers: Workers, tally: Tally, tmp_path: Path
) -> None:
    """Compaction, checkpoints and vacuum (default retention) during a score run: every record scored once,
    nothing lost, nothing doubled."""

    def check(project: Project, before: Snapshot, outcomes: list[Outcome]) -> None:
        every_record_scored_once_by_the_champion(project, before, outcomes)
        after = snapshot(project)
        for table in ("records", "quarantine", "models", "reference"):
            assert after.counts[table] == before.counts[table], table
        assert all(o.ok for o in outcomes)

    run_races(
        "maintain x score",
        stages["ingested"],
        tmp_path,
        workers,
        tally,
        lambda p: (("maintain", p.config, {}), ("score", p.config, {})),
        check,
    )
