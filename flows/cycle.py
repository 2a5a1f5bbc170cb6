"""`scoring_cycle`: the main schedule, one pass of everything that is due."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from flows.deployed import add_to_run_name, dashboard_url, is_deployed
from flows.feedback import LabelFileReport, collect_feedback
from flows.ingest import FileReport, ingest
from flows.monitor import MonitorOutcome, monitor, report_links
from flows.retrain import RetrainDecision, retrain
from flows.runtime import run_name, settings_from
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
    decision = None
    if outcome.retrain.due and not is_deployed():
        # Locally (the demo, the CLI) the cycle retrains inline; from a deployment, `monitor` has started a
        # run of the `retrain` deployment instead (outcome.retrain_run).
        decision = retrain(config, trigger=outcome.retrain.summary)
    logger.info(
        "cycle done: %d file(s) ingested, %d records scored by %s, %d label(s) stored%s",
        len(files),
        scored.scored,
        scored.model_version,
        sum(r.stored for r in labels),
        f"; retrain: {decision.reason}" if decision else "",
    )
    positive = settings_from(config).dataset.classes[1]
    create_markdown_artifact(
        key="cycle-summary",
        markdown=_summary(files, scored, labels, outcome, decision, positive),
        description=f"scoring cycle, scored by {scored.model_version}",
    )
    create_link_artifact(
        key="dashboard",
        link=dashboard_url(),
        link_text="Scorehouse dashboard",
        description="predictions, records and monitoring trends",
    )
    add_to_run_name(scored.model_version)
    return CycleReport(
        files=len(files), scored=scored, labels=sum(r.stored for r in labels), monitor=outcome, retrain=decision
    )


def _summary(
    files: list[FileReport],
    scored: ScoreReport,
    labels: list[LabelFileReport],
    outcome: MonitorOutcome,
    decision: RetrainDecision | None,
    positive: str,
) -> str:
    """What an operator reads on the cycle's run page: every count of the batch, where to look next."""
    rows_in = sum(f.rows_in or 0 for f in files)
    stored, quarantined = sum(f.stored for f in files), sum(f.quarantined for f in files)
    refused = [f"`{f.name}` ({f.refused})" for f in files if f.refused]
    reasons: dict[str, int] = {}
    for f in files:
        for reason, n in f.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
    if decision is not None:
        retraining = f"{'promoted' if decision.promoted else 'kept the champion'}: {decision.reason}"
    elif outcome.retrain_run:
        retraining = f"due ({outcome.retrain.summary}): retrain deployment run `{outcome.retrain_run}`"
    else:
        retraining = f"not due ({outcome.retrain.summary})"
    lines = [
        f"# Scoring cycle: scored by {scored.model_version}",
        "",
        "| step | result |",
        "|---|---|",
        f"| ingest | {len(files)} file(s): {rows_in} rows in, {stored} stored, {quarantined} quarantined"
        + (f"; refused whole: {', '.join(refused)}" if refused else "")
        + " |",
        f"| score | {scored.scored} records scored by **{scored.model_version}** in {scored.chunks} chunk(s), "
        f"{scored.positives} predicted {positive} |",
        f"| feedback | {len(labels)} file(s): {sum(r.stored for r in labels)} labels stored, "
        f"{sum(r.rejected for r in labels)} rejected |",
        f"| monitor | {'; '.join(outcome.alerts) or 'no alert'}"
        + ("" if outcome.new_report else " (no new report: nothing new to monitor)")
        + " |",
        f"| retrain | {retraining} |",
    ]
    if reasons:
        lines += ["", "Quarantined rows by column / rule:", ""]
        lines += [f"- {reason}: {n}" for reason, n in sorted(reasons.items(), key=lambda item: -item[1])]
    lines += ["", report_links(outcome) if outcome.report_path else f"[dashboard]({dashboard_url()})"]
    return "\n".join(lines)
