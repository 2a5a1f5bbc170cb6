"""`scorehouse`: the command line. Each command runs the matching flow in this process.

Without a Prefect server, the first flow of a command starts Prefect's temporary API (about 20 s);
with `make server` running and PREFECT_API_URL set, commands use that server and start at once.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

import flows  # noqa: F401  (quiet, offline Prefect defaults before Prefect is imported)
from pipeline.config import ConfigError

app = typer.Typer(help="Scorehouse: batch scoring that publishes predictions as data.", no_args_is_help=True)
ConfigOption = Annotated[
    str | None, typer.Option("--config", "-c", help="config file (default: $SCOREHOUSE_CONFIG, then scorehouse.toml)")
]


def _fail(error: Exception) -> None:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


@app.command()
def init(config: ConfigOption = None) -> None:
    """Create the warehouse folders and the DuckDB catalog of views (safe to run again)."""
    from flows.runtime import open_store, settings_from
    from warehouse.catalog import catalog_path

    try:
        store = open_store(settings_from(config))
    except ConfigError as error:
        _fail(error)
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
        typer.echo(
            f"{r.name}: {r.rows_in} in, {r.stored} stored, {r.quarantined} quarantined"
            + (" (already ingested)" if r.skipped else "")
            + (f" (refused: {r.refused})" if r.refused else "")
        )


@app.command()
def score(config: ConfigOption = None) -> None:
    """Score every record the champion has not scored yet."""
    from flows.score import score as score_flow

    report = _run(score_flow, config)
    typer.echo(f"{report.scored} records scored by {report.model_version}")


@app.command()
def cycle(config: ConfigOption = None) -> None:
    """One scoring cycle: ingest, then score."""
    from flows.cycle import scoring_cycle

    report = _run(scoring_cycle, config)
    typer.echo(f"{report.scored} records scored by {report.model_version}")


@app.command()
def status(config: ConfigOption = None) -> None:
    """Counts, the champion and the last batches, read from the warehouse (no Prefect needed)."""
    from flows.runtime import open_store, settings_from
    from warehouse.status import warehouse_status

    try:
        store = open_store(settings_from(config))
    except ConfigError as error:
        _fail(error)
    with store.connect() as con:
        typer.echo(json.dumps(warehouse_status(con), indent=2, default=str))


@app.command()
def demo(
    config: ConfigOption = None,
    days: Annotated[int, typer.Option(help="simulated days of arrivals")] = 6,
) -> None:
    """Reset the run-time folders, train, and run simulated days of arrivals through the real flows."""
    from flows.demo import run_demo

    try:
        summary = run_demo(config, days=days, say=lambda line: typer.secho(line, fg=typer.colors.CYAN))
    except ConfigError as error:
        _fail(error)
    typer.echo(_where_to_look(summary))


def _run(flow: Any, config: str | None) -> Any:
    try:
        return flow(config)
    except ConfigError as error:
        _fail(error)


def _where_to_look(summary: dict[str, Any]) -> str:
    status = summary["status"]
    catalog = summary["catalog"]
    return f"""
Scorehouse demo finished.
  champion:        {summary["champion"]}
  records stored:  {status["records"]}   quarantined rows: {status["quarantined_rows"]}
  predictions:     {status["predictions"]}

Look at it:
  duckdb -readonly {catalog} -c "select * from predictions_current limit 5"
  duckdb -readonly {catalog} -c "select * from quarantine_reasons"
  uv run scorehouse status
  python -c "import duckdb; print(duckdb.connect('{catalog}', read_only=True).sql('from champion_history'))"
"""
