"""Crash anywhere (invariant 3): flows killed with SIGKILL, then finished by the next run.

A project goes through train → ingest → score → collect_feedback → retrain once through the real
flows; a copy of its folder is kept before each flow (a stage). Each trial copies a stage, runs that
flow's own code in a separate process (tests/reliability/_driver.py, forked from a warm fork server:
Prefect's per-process start would cost about 20 s a trial) and kills it with SIGKILL, either at an
exact point (half-way through a Parquet batch file or a joblib model file, just before or after a
rename, after a model folder is in place) or after a seeded random delay spread over the run's
measured duration. After each kill a read-only reader must see no partial batch, no duplicate and no
temporary file; then the next run (the driver again, or the real Prefect flow in this process) must
finish the work with every count exactly as in the uninterrupted run. One more trial kills the real
Prefect `score` flow in its own `python -m` process (connected to the session's Prefect server).

The last three tests kill a run between the two batches of a pair (quarantine then records, rejects then
labels, reference set then registry rows) and let the world move on before the next run (records
arrive, a file with the same ids arrives, new labels arrive): the next run must still finish the work
without losing or double-counting a row.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import prefect.settings
import pytest

from flows.feedback import collect_feedback
from flows.ingest import ingest
from flows.maintain import maintain
from flows.retrain import retrain
from flows.score import score
from flows.train import train
from pipeline import simulate
from pipeline.artifacts import load_version
from tests.conftest import REPO_ROOT
from tests.flows.conftest import Project, arrivals, sample, typed
from tests.reliability import _driver, _summary
from tests.reliability._invariants import Snapshot, assert_consistent, journal_events, snapshot
from tests.reliability._projects import quick_project

SEED = 20261121
CHUNK = 50  # rows per ingest block and per scoring chunk: many commits per run
FLOWS: dict[str, Callable[..., Any]] = {
    "train": train,
    "ingest": ingest,
    "score": score,
    "collect_feedback": collect_feedback,
    "retrain": retrain,
    "maintain": maintain,
}


@dataclass
class Stage:
    flow: str
    folder: Path  # the project just before the flow ran
    before: Snapshot  # what it held then
    real: Snapshot  # what the real flow left, run once without interruption


@dataclass
class Tally:
    """Every trial: the flow, how it was killed, where the kill landed."""

    trials: list[tuple[str, str, str]]

    def add(self, flow: str, how: str, point: str) -> None:
        self.trials.append((flow, how, point))


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    """The trials of this module, printed at the end of the run (the terminal summary) and with `-s`."""
    seen = Tally(trials=[])
    yield seen
    flows = Counter(flow for flow, _, _ in seen.trials)
    points = Counter(point for _, _, point in seen.trials)
    lines = [f"crash trials: {len(seen.trials)} ({', '.join(f'{f} {n}' for f, n in flows.items())})"]
    lines.append(f"kill points: {len(points)} kinds")
    lines += [f"  {n:2d} x {point}" for point, n in points.most_common()]
    lines += [f"  {flow:<17} {how:<40} -> {point}" for flow, how, point in seen.trials]
    print("\n" + "\n".join(lines))
    _summary.LINES.extend(lines)


def _label_rows(start: int, stop: int) -> pd.DataFrame:
    return sample().iloc[start:stop]


def _incoming_files(project: Project) -> None:
    """Two files of four blocks each, with bad rows, a duplicate id within a file and one across files."""
    a = arrivals(200)
    a.loc[5, "int_rate"] = "abc"
    a.loc[77, "term"] = "term_99"
    a.loc[150, "funded_amnt"] = "-5"
    a.loc[180, "loan_id"] = a.loc[10, "loan_id"]
    project.drop_csv(a, "a.csv")
    b = typed(arrivals(200, start=4200), project.settings)
    b.loc[40, "loan_id"] = a.loc[20, "loan_id"]
    b.loc[160, "funded_amnt"] = float("nan")
    project.drop_parquet(b, "b.parquet")


def _label_files(project: Project) -> None:
    folder = project.settings.feedback_dir
    folder.mkdir(parents=True, exist_ok=True)
    day = pd.Timestamp("2026-11-20").date()
    first = _label_rows(4000, 4180)
    ghosts = first.iloc[:3].assign(loan_id=["NOPE1", "NOPE2", "NOPE3"])
    simulate.labels_file(pd.concat([first, ghosts]), project.settings.dataset, day).to_csv(
        folder / "labels-1.csv", index=False
    )
    second = _label_rows(4200, 4350)
    wrong = second.iloc[:2].assign(Class="maybe")
    simulate.labels_file(pd.concat([second, wrong]), project.settings.dataset, day).to_csv(
        folder / "labels-2.csv", index=False
    )


def _freeze(project: Project, folder: Path) -> Path:
    shutil.copytree(project.folder, folder)
    return folder


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stage]:
    root = tmp_path_factory.mktemp("crash")
    # Vacuum keeps nothing: a maintain run deletes every file no current snapshot uses (the trials copy the
    # stage folder, so no reader holds an older snapshot).
    project = quick_project(root / "p0", chunk_rows=CHUNK, maintenance={"retention_days": 0})
    prepare: dict[str, Callable[[Project], None]] = {"ingest": _incoming_files, "collect_feedback": _label_files}
    out: dict[str, Stage] = {}
    for flow in FLOWS:
        prepare.get(flow, lambda _: None)(project)
        before = snapshot(project)
        folder = _freeze(project, root / f"stage-{flow}")
        result = FLOWS[flow](project.config)
        if flow == "retrain":
            assert result.challenger == "v2", result  # the stage really trains a challenger
        out[flow] = Stage(flow=flow, folder=folder, before=before, real=snapshot(project))
    counts = out["maintain"].real.counts
    assert counts["records"] + counts["quarantine"] == 400 and counts["predictions"] == counts["records"]
    return out


@pytest.fixture(scope="module")
def launcher() -> multiprocessing.context.ForkServerContext:
    """Trial processes fork from a server that imported the driver (and the flows) once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.reliability._driver"])
    return context


def clone(stage: Stage, folder: Path) -> Project:
    shutil.copytree(stage.folder, folder)
    project = Project(folder=folder, config_path=folder / "scorehouse.toml")
    project.store()  # the catalog's views hold absolute paths: rebuilt for the copy, as a moved warehouse is
    return project


def _wait_for(event: str, journal: Path, process: multiprocessing.process.BaseProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.is_alive():
        if journal.exists() and f'"e": "{event}"' in journal.read_text():
            return
        time.sleep(0.001)


def drive(
    launcher: multiprocessing.context.ForkServerContext,
    flow: str,
    project: Project,
    journal: Path,
    kill: str | None = None,
    delay: tuple[str, float] | None = None,
) -> int | None:
    """Run the driver in a trial process, killed at the hook `kill` or `delay[1]` seconds after it journalled the
    event `delay[0]`. Returns its exit code."""
    process = launcher.Process(target=_driver.run, args=(flow, project.config, str(journal), kill))
    process.start()
    if delay is not None:
        _wait_for(delay[0], journal, process)
        time.sleep(delay[1])
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)  # type: ignore[arg-type]
    process.join(timeout=180)
    if process.is_alive():
        process.kill()
        process.join()
        raise AssertionError(f"the {flow} driver hung; journal: {journal.read_text()[-2000:]}")
    return process.exitcode


def kill_point(events: list[dict[str, Any]]) -> str:
    """Where the process was when it died, from the last steps it journalled."""
    if not events or events[-1]["e"] == "done":
        return "after the run had finished"
    if events[-1]["e"] == "kill":
        at = str(events[-1]["at"]).split(":")
        table = next((str(e["table"]) for e in reversed(events) if e["e"] == "commit"), "")
        renamed = next((str(e["destination"]) for e in reversed(events) if e["e"] == "replace"), "")
        write = next((str(e["what"]) for e in reversed(events) if e["e"] == "write"), "")
        folder = "model folder" if Path(renamed).parent.name == "models" else Path(renamed).name
        return {
            "delta": f"inside a Delta {write}" + (f" ({table})" if write in ("append", "merge") else ""),
            "commit": f"just {at[2]} a commit ({table})",
            "replace": f"just {at[2]} a rename ({folder})",
            "dump": "half-way through a joblib model file",
            "save": "model folder in place, registry not yet written",
        }[at[0]]
    pending: dict[str, dict[str, Any]] = {}
    table = ""
    for event in events:
        kind = str(event["e"])
        if kind == "commit":
            table = str(event["table"])
        if kind in ("commit", "write", "replace", "dump", "save"):
            pending[kind] = event
        for opened, closed in (
            ("commit", "committed"),
            ("write", "written"),
            ("replace", "replaced"),
            ("dump", "dumped"),
            ("save", "saved"),
        ):
            if kind == closed:
                pending.pop(opened, None)
    last_commit = max((i for i, e in enumerate(events) if e["e"] == "committed"), default=-1)
    last_save = max((i for i, e in enumerate(events) if e["e"] == "saved"), default=-1)
    if "dump" in pending:
        return "during a model save (joblib dump)"
    if "save" in pending:
        return "during a model save (hashing, fsync, rename)"
    if "write" in pending:
        return f"inside a Delta {pending['write'].get('what', 'write')} ({table})"
    if "replace" in pending:
        return f"during a rename ({table})"
    if "commit" in pending:
        return f"inside a commit, before or after the write ({table})"
    if last_save > last_commit:
        return "after the model save, before its reference set is committed"
    if not any(e["e"] == "commit" for e in events):
        return "before the first commit (reading, validating, fitting)"
    return "between commits (reading, validating or scoring the next block)"


def assert_finished(stage: Stage, project: Project, after: Snapshot) -> None:
    """The interrupted run plus the next one left exactly what one uninterrupted run leaves."""
    golden = stage.real
    assert after.counts == golden.counts, stage.flow
    # Batch ids derive from the inputs; scoring chunks depend on what was left to score, so only their sizes.
    assert after.without("predictions", "predictions_current") == golden.without(
        "predictions", "predictions_current"
    ), stage.flow
    assert all(n <= CHUNK for n in after.batches["predictions"].values())
    settings = project.settings
    assert list(settings.incoming_dir.glob("*")) == [] and list(settings.feedback_dir.glob("*")) == []
    with project.store().connect() as con:
        unscored = con.execute("SELECT count(*) FROM records ANTI JOIN predictions USING (record_id)").fetchone()
        versions = con.execute(
            "SELECT model_version, artifact_dir, artifact_sha256 FROM models WHERE event = 'trained' "
            "AND model_version IN (SELECT model_version FROM reference)"
        ).fetchall()
        reference = con.execute("SELECT * FROM reference").df()
    if stage.flow in ("score", "collect_feedback", "retrain"):
        assert unscored == (0,)
    if stage.flow in ("train", "retrain"):
        # The reference set was written by the run that saved the files: the same transform everywhere.
        for version, folder, hashes in versions:
            model = load_version(project.model_folder(folder), json.loads(hashes))
            rows = reference[reference["model_version"] == version]
            scores, _, vectors = model.score(rows)
            np.testing.assert_allclose(rows["score"].to_numpy(), scores, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(np.stack(rows["embedding"].to_numpy()), vectors, rtol=1e-5, atol=1e-5)


# Each flow's kill plan: exact points (`hook:n:phase`, n drawn from the run's own count of such calls, "odd":
# after a quarantine or rejects batch and before the batch that marks the work done), and random moments
# (`random@<event>`: a seeded delay spread over the time from that event to the end of an uninterrupted run).
# The last trial of each flow is finished by the real Prefect flow in this process, the others by the driver.
PLANS: dict[str, list[str]] = {
    "ingest": ["delta:?:mid"] * 3
    + ["commit:odd:after"] * 2
    + ["commit:?:before", "random@start", "random@commit", "random@commit"],
    "score": ["delta:?:mid"] * 3
    + ["commit:?:after"] * 2
    + ["commit:?:before", "random@start", "random@start", "random@commit", "random@commit"],
    "collect_feedback": ["delta:?:mid", "commit:odd:after", "commit:?:before", "random@start"],
    "train": ["dump:1:mid", "save:1:after", "commit:1:after", "delta:?:mid", "random@save"],
    "retrain": ["dump:2:mid", "commit:1:after", "random@save", "random@start"],
    # Inside compaction, checkpoint and vacuum (the `delta` calls of a maintain run, in that order per table).
    # Calls 1-20 compact and checkpoint the ten tables, 21-30 vacuum them.
    "maintain": ["delta:?:mid"] * 3 + ["delta:1:mid", "delta:2:mid", "delta:22:mid", "delta:27:mid", "random@start"],
}


def _resolve(spec: str, rng: random.Random, counts: Counter[str]) -> str:
    if spec.startswith("random@"):
        return spec
    hook, number, phase = spec.split(":")
    total = counts[hook]
    assert total >= 1, f"the uninterrupted run made no {hook} call"
    if number == "?":
        number = str(rng.randint(1, total))
    elif number == "odd":
        number = str(rng.randrange(1, total + 1, 2))
    return f"{hook}:{number}:{phase}"


def _calls(events: list[dict[str, Any]]) -> Counter[str]:
    names = {"write": "delta", "commit": "commit", "replace": "replace", "dump": "dump", "save": "save"}
    return Counter(names[str(e["e"])] for e in events if e["e"] in names)


@dataclass(frozen=True)
class Trial:
    number: int
    kill: str  # an exact point `hook:n:phase`, or `random@<event>`: a kill `delay` seconds after that event
    delay: float
    real_finish: bool  # finished by the real Prefect flow (in this process) rather than by the driver

    def describe(self) -> str:
        return f"{self.kill} + {self.delay:.3f} s" if self.kill.startswith("random@") else self.kill


def run_trial(launcher: multiprocessing.context.ForkServerContext, stage: Stage, trial: Trial, folder: Path) -> str:
    """Kill one run, check what a reader sees, finish the work, check it is exactly done. Returns the kill point."""
    flow, what = stage.flow, f"{stage.flow} trial {trial.number} ({trial.describe()})"
    project, before = clone(stage, folder), stage.before
    at_random = trial.kill.startswith("random@")
    delay = trial.delay
    for attempt in range(4):  # the run finished before a random kill: try again, killing sooner
        killed = folder.with_name(f"{folder.name}.kill-{attempt}.jsonl")
        if at_random:
            code = drive(launcher, flow, project, killed, delay=(trial.kill.removeprefix("random@"), delay))
        else:
            code = drive(launcher, flow, project, killed, kill=trial.kill)
        assert code in (-signal.SIGKILL, 0 if at_random else -signal.SIGKILL), (
            f"{what}: exit code {code}; {killed.read_text()[-3000:]}"
        )
        if code == -signal.SIGKILL:
            break
        shutil.rmtree(project.folder)
        project, delay = clone(stage, folder), delay / 2
    assert code == -signal.SIGKILL, f"{what}: the run finished before every kill"
    point = kill_point(journal_events(killed))
    settings = project.settings
    if trial.kill.startswith("dump"):  # the half-saved version is there, under a name no registry row holds
        assert list(settings.models_dir.glob(".v*.tmp")), what
    assert_consistent(project, before, (killed,))

    if trial.real_finish:
        FLOWS[flow](project.config)
        after = assert_consistent(project, before, None, settled=True)
    else:
        finishing = folder.with_name(f"{folder.name}.next.jsonl")
        assert drive(launcher, flow, project, finishing) == 0, f"{what}: {finishing.read_text()[-3000:]}"
        after = assert_consistent(project, before, (killed, finishing), settled=True)
    assert_finished(stage, project, after)
    shutil.rmtree(project.folder)
    return point


@pytest.mark.parametrize("flow", list(PLANS))
def test_a_flow_killed_anywhere_leaves_whole_batches_and_the_next_run_finishes_exactly(
    flow: str,
    stages: dict[str, Stage],
    launcher: multiprocessing.context.ForkServerContext,
    tally: Tally,
    tmp_path: Path,
) -> None:
    stage = stages[flow]
    rng = random.Random(f"{SEED}-{flow}")

    # The uninterrupted run, through the driver: it must leave what the real flow left, and it gives the
    # number of each kind of call and the run's duration, over which the random kills are spread.
    reference, before = clone(stage, tmp_path / "uninterrupted"), stage.before
    journal = tmp_path / "uninterrupted.jsonl"
    assert drive(launcher, flow, reference, journal) == 0, journal.read_text()[-3000:]
    events = journal_events(journal)
    assert_finished(stage, reference, assert_consistent(reference, before, (journal,), settled=True))
    calls = _calls(events)
    at = {str(e["e"]): float(e["t"]) for e in reversed(events)}  # the first time of each event

    def delay(spec: str) -> float:
        anchor = spec.removeprefix("random@")
        return rng.uniform(0.02, 0.95) * (at["done"] - at[anchor]) if anchor != spec else 0.0

    plan = PLANS[flow]
    trials = [
        Trial(number, _resolve(spec, rng, calls), delay(spec), number == len(plan) - 1)
        for number, spec in enumerate(plan)
    ]
    # Two trials at a time (each in its own copy of the stage); the one finished by the real flow runs last, here.
    with ThreadPoolExecutor(max_workers=2) as pool:
        driven = [t for t in trials if not t.real_finish]
        points = list(pool.map(lambda t: run_trial(launcher, stage, t, tmp_path / f"trial-{t.number}"), driven))
    finished_by_flow = [t for t in trials if t.real_finish]
    points += [run_trial(launcher, stage, t, tmp_path / f"trial-{t.number}") for t in finished_by_flow]
    for trial, point in zip(driven + finished_by_flow, points, strict=True):
        tally.add(flow, trial.describe() + (", then real flow" if trial.real_finish else ""), point)


def test_the_real_score_flow_killed_in_its_own_process_is_finished_by_the_next_run(
    stages: dict[str, Stage], tally: Tally, tmp_path: Path
) -> None:
    """`python -m` the real Prefect flow (on this session's Prefect server), killed just before its third
    commit."""
    stage = stages["score"]
    project, before = clone(stage, tmp_path / "project"), stage.before
    journal = tmp_path / "real.jsonl"
    env = {**os.environ, "PREFECT_API_URL": str(prefect.settings.PREFECT_API_URL.value())}
    kill = "commit:3:before"
    command = [sys.executable, "-m", "tests.reliability._driver", "score", project.config, str(journal), "--real"]
    completed = subprocess.run(
        [*command, "--kill", kill],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    events = journal_events(journal)
    assert completed.returncode == -signal.SIGKILL, completed.stderr[-3000:]
    assert (events[-1]["e"], events[-1]["at"]) == ("kill", kill)
    seen = assert_consistent(project, before, (journal,))
    assert seen.counts["predictions"] == 2 * CHUNK  # two whole chunks, nothing of the third

    report = score(project.config)

    assert report.scored == stage.real.counts["records"] - 2 * CHUNK
    assert_finished(stage, project, assert_consistent(project, before, None, settled=True))
    tally.add("score (real flow)", f"{kill} (python -m)", kill_point(events))


def test_the_plan_kills_at_least_thirty_times_across_the_flows() -> None:
    planned = sum(len(plan) for plan in PLANS.values()) + 1  # + the real flow killed in its own process
    assert planned >= 30
    every = "".join(spec for plan in PLANS.values() for spec in plan)
    for point in ("delta", "commit", "dump", "save", "random@"):
        assert point in every, point


def test_a_label_file_killed_after_its_rejects_then_finished_after_its_records_arrived_counts_each_label_once(
    stages: dict[str, Stage], launcher: multiprocessing.context.ForkServerContext, tally: Tally, tmp_path: Path
) -> None:
    """Labels often come before their records ("send the label again once the record is in"). A run killed
    after a label file's rejects batch, finished after the cycle's next ingest brought those records:
    every label row must still be in exactly one of `feedback` and `feedback_rejects`."""
    project = clone(stages["collect_feedback"], tmp_path / "project")
    settings = project.settings
    for waiting in settings.feedback_dir.iterdir():
        waiting.unlink()
    ingested, late = sample().iloc[4030:4040], sample().iloc[4400:4410]  # 4400.. are not ingested yet
    labels = simulate.labels_file(pd.concat([ingested, late]), settings.dataset, pd.Timestamp("2026-11-20").date())
    labels.to_csv(settings.feedback_dir / "late.csv", index=False)
    journal = tmp_path / "kill.jsonl"

    assert drive(launcher, "collect_feedback", project, journal, kill="commit:1:after") == -signal.SIGKILL
    tally.add("collect_feedback", "commit:1:after, records arrive", kill_point(journal_events(journal)))
    assert project.scalar("SELECT count(*) FROM feedback_rejects WHERE source_file = 'late.csv'") == 10
    project.drop_csv(arrivals(10, start=4400), "late-records.csv")
    ingest(project.config)  # the records arrive
    collect_feedback(project.config)  # the next run finishes the label file

    stored = project.scalar("SELECT count(*) FROM feedback WHERE source_file = 'late.csv'")
    rejected = project.scalar("SELECT count(*) FROM feedback_rejects WHERE source_file = 'late.csv'")
    assert stored + rejected == 20, f"20 label rows in, {stored} stored + {rejected} rejected"


def test_an_incoming_file_killed_between_its_batches_then_finished_after_a_file_with_the_same_ids_loses_no_row(
    stages: dict[str, Stage], launcher: multiprocessing.context.ForkServerContext, tally: Tally, tmp_path: Path
) -> None:
    """A file killed after its second block's quarantine batch; before the next run, another file holding ten
    of that block's ids is dropped (and is ingested first). Rows in = rows stored + rows quarantined still."""
    project = clone(stages["ingest"], tmp_path / "project")
    settings = project.settings
    for waiting in settings.incoming_dir.iterdir():
        waiting.unlink()
    later = arrivals(100, start=4500)
    project.drop_csv(later, "b-late.csv")  # two blocks of 50
    journal = tmp_path / "kill.jsonl"

    assert drive(launcher, "ingest", project, journal, kill="commit:3:after") == -signal.SIGKILL
    tally.add("ingest", "commit:3:after, same ids arrive", kill_point(journal_events(journal)))
    assert project.scalar("SELECT count(*) FROM records WHERE source_file = 'b-late.csv'") == CHUNK
    project.drop_csv(later.iloc[60:70], "a-resent.csv")  # ten rows of block 2, sent again under another name
    ingest(project.config)

    stored = project.scalar("SELECT count(*) FROM records WHERE source_file = 'b-late.csv'")
    quarantined = project.scalar("SELECT count(*) FROM quarantine WHERE source_file = 'b-late.csv'")
    assert stored + quarantined == 100, f"100 rows in, {stored} stored + {quarantined} quarantined"


# A version's training rows, whichever table holds them (a rejected challenger stores only its own rows).
TRAINING_ROWS = (
    "SELECT model_version, record_id, split, batch_id FROM reference "
    "UNION ALL SELECT model_version, record_id, split, batch_id FROM challenger_rows"
)


def test_a_retrain_killed_after_its_reference_set_then_finished_after_new_labels_keeps_one_reference_set(
    stages: dict[str, Stage], launcher: multiprocessing.context.ForkServerContext, tally: Tally, tmp_path: Path
) -> None:
    """A retrain killed once the challenger's files and training rows are written (its first commit), before
    its registry rows; new labels arrive before the next run. The version registered in the end must have
    one set of training rows without duplicates and, if promoted, one reference set made by the files it is
    registered with (invariant 6)."""
    project = clone(stages["retrain"], tmp_path / "project")
    settings = project.settings
    journal = tmp_path / "kill.jsonl"

    assert drive(launcher, "retrain", project, journal, kill="commit:1:after") == -signal.SIGKILL
    tally.add("retrain", "commit:1:after, labels arrive", kill_point(journal_events(journal)))
    assert project.scalar(f"SELECT count(DISTINCT batch_id) FROM ({TRAINING_ROWS}) WHERE model_version = 'v2'") == 1
    more = simulate.labels_file(sample().iloc[4350:4400], settings.dataset, pd.Timestamp("2026-11-21").date())
    more.to_csv(settings.feedback_dir / "labels-3.csv", index=False)
    collect_feedback(project.config)  # new labels before the next run
    decision = retrain(project.config)

    version = decision.challenger
    assert version is not None
    stored = project.query(f"SELECT * FROM ({TRAINING_ROWS}) WHERE model_version = ?", [version])
    batches, duplicates = stored["batch_id"].nunique(), int(stored.duplicated(["record_id", "split"]).sum())
    assert (batches, duplicates) == (1, 0), f"{version} has {batches} sets of training rows, {duplicates} duplicated"
    reference = project.query("SELECT * FROM reference WHERE model_version = ?", [version])
    assert reference.empty != decision.promoted  # only a champion stores a reference set
    if decision.promoted:  # its reference set was scored by the files it is registered with
        folder, hashes = project.query(
            "SELECT artifact_dir, artifact_sha256 FROM models WHERE event = 'trained' AND model_version = ?", [version]
        ).iloc[0]
        scores, _, _ = load_version(project.model_folder(folder), json.loads(hashes)).score(reference)
        np.testing.assert_allclose(reference["score"].to_numpy(), scores, rtol=1e-6, atol=1e-7)
