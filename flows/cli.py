"""`scorehouse`: the command line. Each command runs the matching flow in this process.

Without a Prefect server, the first flow of a command starts Prefect's temporary API (about 20 s on an
idle machine; it may take up to `_environment.EPHEMERAL_STARTUP_TIMEOUT_S` under load); with
`make server` running and PREFECT_API_URL set, commands use that server and start at once.

Every expected failure (a wrong config or override, a refused model file, a full disk, a demo that would
wipe data it did not create) prints one line saying what is wrong and what to do, and exits with 1.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer

from flows import _environment

app = typer.Typer(help="Scorehouse: batch scoring that publishes predictions as data.", no_args_is_help=True)
ConfigOption = Annotated[
    str | None, typer.Option("--config", "-c", help="config file (default: $SCOREHOUSE_CONFIG, then scorehouse.toml)")
]
ActorOption = Annotated[str | None, typer.Option(help="who; recorded in the registry (default: your user name)")]


@app.callback()
def _start() -> None:
    """Runs before every command, before Prefect is imported: the process's quiet, offline defaults."""
    _environment.apply_defaults()


def _expected_errors() -> tuple[type[Exception], ...]:
    """Failures a person can fix from the message alone; anything else is a bug and keeps its traceback."""
    from flows.engine import ClusterError
    from pipeline.artifacts import ArtifactError
    from pipeline.backfill import BackfillError
    from pipeline.config import ConfigError
    from warehouse.store import CommitError

    return (ConfigError, ArtifactError, CommitError, ClusterError, BackfillError)


def _fail(error: Exception) -> NoReturn:
    message = " ".join(str(error).split())  # one line, whatever the error's own layout
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _who(actor: str | None) -> str:
    """The name recorded for a decision; asked of the system only when needed (a container's uid may have no
    user name, where getpass raises)."""
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


class _NoTracebackFor(logging.Filter):
    """Drops the traceback Prefect logs with a flow run's failure when the failure is an expected one."""

    def __init__(self, expected: tuple[type[Exception], ...]) -> None:
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.expected):
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def _expected_failures_in_one_line() -> Iterator[None]:
    expected = _expected_errors()
    quiet = _NoTracebackFor(expected)
    handlers = [h for name in ("prefect", "prefect.flow_runs", "prefect.task_runs") for h in _handlers(name)]
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    except expected as error:
        _fail(error)
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def _handlers(name: str) -> list[logging.Handler]:
    logger: logging.Logger | None = logging.getLogger(name)
    found: list[logging.Handler] = []
    while logger is not None:
        found += logger.handlers
        logger = logger.parent if logger.propagate else None
    return found


@app.command()
def init(config: ConfigOption = None) -> None:
    """Create the warehouse folders and the DuckDB catalog of views (safe to run again)."""
    from flows.runtime import open_store, settings_from
    from warehouse.catalog import catalog_path

    with _expected_failures_in_one_line():
        store = open_store(settings_from(config))
    typer.echo(f"catalog ready: {catalog_path(store)}")


@app.command()
def train(config: ConfigOption = None) -> None:
    """Train a model version on the reference data; the first one becomes champion."""
    from flows.train import train as train_flow

    typer.echo(f"model version: {_run(train_flow, config)}")


@app.command()
def ingest(config: ConfigOption = None) -> None:
    """Validate and store every new file in the incoming folder."""
    from flows.ingest import ingest as ingest_flow

    reports = _run(ingest_flow, config)
    for r in reports:
        if r.left and r.rows_in is None:
            typer.echo(f"{r.name}: left in the folder: {r.left}")
            continue
        rows_in = r.rows_in if r.rows_in is not None else "-"
        typer.echo(
            f"{r.name}: {rows_in} in, {r.stored} stored, {r.quarantined} quarantined"
            + (" (already ingested)" if r.skipped else "")
            + (f" (refused: {r.refused})" if r.refused else "")
            + (f" (left in the folder: {r.left})" if r.left else "")
        )


@app.command()
def score(
    config: ConfigOption = None,
    version: Annotated[
        str | None, typer.Option("--version", help="backfill: score with this registered version, not promoting it")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="backfill: the records ingested on or after this day (UTC) or time"),
    ] = None,
) -> None:
    """Score every record the champion has not scored yet; with --version and --since, backfill instead."""
    if version is None and since is None:
        from flows.score import score as score_flow

        report = _run(score_flow, config)
        typer.echo(f"{report.scored} records scored by {report.model_version}")
        return
    _backfill(version, since, config)


def _backfill(version: str | None, since: str | None, config: str | None) -> None:
    """`score --version vN --since DATE`: score history with a version that is not champion."""
    from flows.runtime import utc_now
    from pipeline.backfill import BackfillError, check_since, parse_since

    if version is None or since is None:
        _fail(ValueError("a backfill needs both --version and --since, e.g. --version v2 --since 2026-11-20"))
    try:
        moment = check_since(parse_since(since), utc_now())
    except BackfillError as error:
        _fail(error)
    from flows.backfill import backfill

    report = _run(lambda path: backfill(version, moment, path), config)
    typer.echo(
        f"backfill: {report.scored} records ingested since {report.since:%Y-%m-%d %H:%M} UTC scored by "
        f"{report.model_version} in {report.units} unit(s); not promoted"
    )


@app.command()
def cycle(config: ConfigOption = None) -> None:
    """One scoring cycle: ingest, score, collect feedback, monitor, retrain when due."""
    from flows.cycle import scoring_cycle

    report = _run(scoring_cycle, config)
    typer.echo(
        f"{report.files} file(s) ingested; {report.scored.scored} records scored by {report.scored.model_version}; "
        f"{report.labels} labels stored; alerts: {', '.join(report.monitor.alerts) or 'none'}; "
        f"retraining: {report.retrain.reason if report.retrain else report.monitor.retrain.summary}"
    )


@app.command()
def feedback(config: ConfigOption = None) -> None:
    """Store every label file waiting in the feedback folder."""
    from flows.feedback import collect_feedback

    for r in _run(collect_feedback, config):
        if r.left and r.rows_in is None:
            typer.echo(f"{r.name}: left in the folder: {r.left}")
            continue
        note = " (already collected)" if r.skipped else (f" (refused: {r.refused})" if r.refused else "")
        note += f" (left in the folder: {r.left})" if r.left else ""
        rows_in = r.rows_in if r.rows_in is not None else "-"
        typer.echo(f"{r.name}: {rows_in} in, {r.stored} stored, {r.rejected} rejected{note}")


@app.command()
def monitor(
    config: ConfigOption = None,
    window: Annotated[
        int | None, typer.Option("--window", min=1, help="days in the window (default: monitoring.window_days)")
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="last day of the window, to (re)monitor a past period"),
    ] = None,
) -> None:
    """Report drift and quality over the recent window (or a past one); say whether retraining is due."""
    from flows.monitor import monitor as monitor_flow

    day = as_of.date() if as_of else None
    outcome = _run(lambda path: monitor_flow(path, window_days=window, as_of=day), config)
    typer.echo(f"report: {outcome.report_path or 'none (no predictions yet)'}")
    typer.echo(f"alerts: {', '.join(outcome.alerts) or 'none'}")
    typer.echo(f"retraining: {'due: ' if outcome.retrain.due else ''}{outcome.retrain.summary}")


@app.command()
def retrain(
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option(help="train a challenger even without new labelled rows")] = False,
) -> None:
    """Train a challenger; promote it only if it beats the champion on the same held-out rows."""
    from flows.retrain import retrain as retrain_flow

    with _expected_failures_in_one_line():
        decision = retrain_flow(config, trigger="by hand", force=force)
    typer.echo(decision.reason)


@app.command()
def promote(
    version: str,
    reason: Annotated[str, typer.Option(help="why; recorded in the registry")],
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Make VERSION the champion by hand (its files must match the registry)."""
    from flows.retrain import promote as promote_flow

    try:
        with _expected_failures_in_one_line():
            typer.echo(f"champion: {promote_flow(version, reason, _who(actor), config)}")
    except ValueError as error:
        _fail(error)


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="why; recorded in the registry")],
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Promote the version that was champion before the current one."""
    from flows.retrain import rollback as rollback_flow

    try:
        with _expected_failures_in_one_line():
            typer.echo(f"champion: {rollback_flow(reason, _who(actor), config)}")
    except ValueError as error:
        _fail(error)


@app.command()
def maintain(config: ConfigOption = None) -> None:
    """Compact the warehouse's small files, checkpoint, vacuum past the retention, prune leftovers."""
    from flows.maintain import maintain as maintain_flow

    report = _run(maintain_flow, config)
    for t in report.tables:
        typer.echo(f"{t.table}: {t.files_before} -> {t.files_after} files, {t.vacuumed} vacuumed")


@app.command()
def forget(
    ids: Annotated[list[str], typer.Argument(help="record ids to erase from every table")],
    reason: Annotated[str, typer.Option(help="why (e.g. the erasure request's reference); recorded")],
    actor: Annotated[str | None, typer.Option(help="who; recorded (default: the current user)")] = None,
    config: ConfigOption = None,
) -> None:
    """Erase records from every table; the next `maintain` deletes the files that held them."""
    from flows.maintain import forget as forget_flow
    from flows.runtime import without_heartbeats

    with _expected_failures_in_one_line(), without_heartbeats():
        erasure = forget_flow(ids, reason=reason, actor=_who(actor), config=config)
    removed = ", ".join(f"{table} {n}" for table, n in erasure.rows.items() if n)
    typer.echo(f"erasure {erasure.erasure_id}: {erasure.ids} id(s); rows removed: {removed or 'none'}")
    typer.echo("the files that held them are deleted by the next `scorehouse maintain` after the vacuum retention")


@app.command()
def catalog(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="a past moment, e.g. 2026-11-22T09:00Z (within the retention)")
    ] = None,
    out: Annotated[str | None, typer.Option(help="where to write it (default: the warehouse's catalog)")] = None,
    config: ConfigOption = None,
) -> None:
    """Write a DuckDB catalog of views over the tables, as they are now or as they were at `--as-of`."""
    from datetime import UTC, datetime
    from pathlib import Path

    import duckdb
    from deltalake.exceptions import DeltaError

    from flows.runtime import open_store, settings_from
    from pipeline.config import ConfigError
    from warehouse.catalog import build_catalog

    moment: datetime | None = None
    if as_of is not None:
        try:
            parsed = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
        except ValueError:
            _fail(ValueError(f"--as-of {as_of!r} is not a time; write it like 2026-11-22T09:00Z"))
        moment = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if moment is not None and out is None:
        _fail(ValueError("--as-of needs --out: the warehouse's own catalog always shows the present"))
    try:
        store = open_store(settings_from(config))
        path = build_catalog(store, Path(out).resolve() if out else None, as_of=moment)
    except ConfigError as error:
        _fail(error)
    except (DeltaError, duckdb.Error, OSError) as error:  # a moment before a table existed, or past the retention
        _fail(ValueError(f"no snapshot of the warehouse at {as_of}: {str(error).splitlines()[0]}"))
    typer.echo(f"catalog written: {path}" + (f" (the tables as of {moment:%Y-%m-%d %H:%M} UTC)" if moment else ""))


@app.command()
def status(config: ConfigOption = None) -> None:
    """Counts, alerts, the champion and the last batches, read from the warehouse's catalog (no Prefect needed)."""
    from contextlib import closing
    from pathlib import Path

    import duckdb

    from pipeline.config import ConfigError, load_settings
    from warehouse.status import open_catalog, warehouse_status

    try:
        settings = load_settings(Path(config) if config else None)
    except ConfigError as error:
        _fail(error)
    if not settings.catalog_path.is_file():  # status only reads: it never creates a warehouse
        _fail(
            FileNotFoundError(
                f"there is no warehouse catalog at {settings.catalog_path} yet: `make demo` builds one from the "
                "sample; for your own data run `scorehouse init` (an empty warehouse) or `scorehouse train`"
            )
        )
    try:
        with closing(open_catalog(settings.catalog_path)) as con:
            answer = warehouse_status(con)
    except duckdb.Error:  # a catalog written before the views changed: rewrite it, then read it
        answer = _status_after_init(settings)
    typer.echo(json.dumps(answer, indent=2, default=str))


def _status_after_init(settings: Any) -> dict[str, Any]:
    """The slow path (opens every Delta table): create the tables and rewrite the catalog, then read it."""
    from contextlib import closing

    from flows.runtime import open_store
    from warehouse.status import open_catalog, warehouse_status

    with _expected_failures_in_one_line():
        store = open_store(settings)
    with closing(open_catalog(store.catalog)) as con:
        return warehouse_status(con)


@app.command()
def demo(
    config: ConfigOption = None,
    days: Annotated[int, typer.Option(help="simulated days of arrivals")] = 8,
    yes: Annotated[
        bool, typer.Option("--yes", help="empty the run-time folders even if the demo did not fill them")
    ] = False,
) -> None:
    """Reset the run-time folders, train, and run simulated days of arrivals through the real flows.

    The folders are emptied without a question only when the demo created the warehouse; otherwise it
    asks (or, without a terminal, refuses unless --yes is given).
    """
    if sys.stderr.isatty():  # a person waiting at a terminal; a script or a test gets only the result
        typer.secho(
            "loading the pipeline (Prefect, scikit-learn, XGBoost): seconds on an idle machine, a minute on a busy one",
            fg=typer.colors.CYAN,
            err=True,
        )
    from flows.demo import ResetRefused, run_demo

    def confirm(question: str) -> bool:
        return yes or (sys.stdin.isatty() and typer.confirm(question, default=False))

    try:
        with _expected_failures_in_one_line():
            summary = run_demo(
                config, days=days, say=lambda line: typer.secho(line, fg=typer.colors.CYAN), confirm=confirm
            )
    except ResetRefused as error:
        _fail(error)
    typer.echo(_where_to_look(summary))


def _say_before_waiting() -> None:
    """One line before the long silent start of a flow command, for a person at a terminal."""
    if sys.stderr.isatty() and not os.environ.get("PREFECT_API_URL"):
        typer.secho(
            "starting Prefect's temporary API: about 20 s on an idle machine, longer on a busy one "
            "(`make server` and PREFECT_API_URL skip it)",
            fg=typer.colors.CYAN,
            err=True,
        )


def _run(flow: Any, config: str | None) -> Any:
    _say_before_waiting()
    from flows.runtime import without_heartbeats

    with _expected_failures_in_one_line(), without_heartbeats():
        return flow(config)


def _where_to_look(summary: dict[str, Any]) -> str:
    """The demo's closing summary; every command in it works as printed, from any directory."""
    from pipeline.config import REPO_ROOT

    status, catalog = summary["status"], summary["catalog"]
    decisions = "\n".join(f"    {version} {event}: {reason}" for version, event, reason in summary["decisions"])
    reports = summary["reports"]
    latest = reports[-1] if reports else "-"
    still_open = ", ".join(status["open_alerts"]) or "none"
    config = f" --config {summary['config']}" if summary.get("config") else ""
    duckdb = f"uvx --from duckdb-cli duckdb -readonly {catalog} -c"
    return f"""
Scorehouse demo finished.
  first champion:  {summary["first_champion"]}; champion now: {(status["champion"] or {}).get("version")}
  records stored:  {status["records"]}   quarantined rows: {status["quarantined_rows"]}
  predictions:     {status["predictions"]}   labels: {status["labels"]}
  reports:         {len(reports)} ({status["reports_with_alerts"]} with alerts), latest: {latest}
  alert episodes:  {status["alert_episodes"]} (open now: {still_open})
  model decisions:
{decisions or "    none"}

Look at it, from any directory (the first uvx call fetches the DuckDB CLI from PyPI):
  {duckdb} "select * from predictions_current limit 5"
  {duckdb} "select * from champion_history"
  {duckdb} "select alert, metric, value, window_end from monitoring_alerts"
  uv run --project {REPO_ROOT} scorehouse status{config}
  make -C {REPO_ROOT} dashboard
"""
