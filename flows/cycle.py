"""`scoring_cycle`: the main schedule, one pass of everything that is due."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger

from flows.feedback import collect_feedback
from flows.ingest import ingest
from flows.monitor import MonitorOutcome, monitor
from flows.retrain import RetrainDecision, retrain
from flows.runtime import run_name
from flows.score import ScoreReport, score


@dataclass(frozen=True)
class CycleReport:
    files: int
    scored: ScoreReport
    labels: int
    monitor: MonitorOutcome
    retrain: RetrainDecision | None


@flow(name="scoring_cycle", flow_run_name=run_name("cycle"))
def scoring_cycle(config: str | None = None) -> CycleReport:
    """Ingest → score → collect feedback → monitor → retrain when a trigger fired."""
    logger = get_run_logger()
    files = ingest(config)
    scored = score(config)
    labels = collect_feedback(config)
    outcome = monitor(config)
    decision = retrain(config, trigger=outcome.retrain.summary) if outcome.retrain.due else None
    logger.info(
        "cycle done: %d file(s) ingested, %d records scored by %s, %d label(s) stored%s",
        len(files),
        scored.scored,
        scored.model_version,
        sum(r.stored for r in labels),
        f"; retrain: {decision.reason}" if decision else "",
    )
    return CycleReport(
        files=len(files), scored=scored, labels=sum(r.stored for r in labels), monitor=outcome, retrain=decision
    )
