"""`scoring_cycle`: the main schedule, one pass of everything that is due."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.ingest import ingest
from flows.runtime import run_name
from flows.score import ScoreReport, score


@flow(name="scoring_cycle", flow_run_name=run_name("cycle"))
def scoring_cycle(config: str | None = None) -> ScoreReport:
    """Ingest the new files, then score every record the champion has not scored."""
    reports = ingest(config)
    result = score(config)
    get_run_logger().info("cycle done: %d file(s) ingested, %d records scored", len(reports), result.scored)
    return result
