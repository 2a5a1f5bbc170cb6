"""Explanations: what drives the scores, as the monitor measured it in every report. The share of each top
reason over time, each feature's contribution drift against the reference set, and the explanation drift,
in plain words with the sample sizes they rest on.

Everything is read from the `monitoring` rows (`top_reason_share`, `contribution_drift`, `explanation_drift`);
nothing is recomputed from the predictions.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from dashboard import charts, ui
from dashboard.data import ask
from pipeline.config import ConfigError, load_settings
from warehouse import queries

SHOWN_FEATURES = len(charts.FEATURE_COLOURS)  # features drawn one by one; the rest are "other features"
NAMED_REASONS = 5  # top reasons named in the sentence on the latest report


def no_baseline(version: object) -> str:
    """Why a version's reports have shares but no drift, and what to do."""
    return (
        f"{ui.text(version)}: its reference set holds no contributions (it was trained before they were stored), so "
        "neither contribution nor explanation drift can be measured for it. Every version trained from now on "
        "stores them: `uv run scorehouse retrain --force` trains a challenger now, measured this way once it is "
        "champion."
    )


# ---------------------------------------------------------------------------------------- decisions


def explanations_switched_off() -> bool | None:
    """What the config says of `[explain] enabled`, negated; None when there is no readable config."""
    try:
        return not load_settings().explain.enabled
    except (ConfigError, OSError):
        return None


def nothing_explained(coverage: queries.ExplainedPredictions, reports: int, switched_off: bool | None) -> str:
    """Why no report has explanation metrics, and what to do, from what the warehouse (and the config) hold."""
    none = f"None of the {ui.count(reports)} monitoring report(s) has explanation metrics"
    if coverage.latest_explained:
        return (
            f"{none} yet, though {ui.count(coverage.explained)} of {ui.count(coverage.predictions)} predictions carry "
            "an explanation: the reports were made before those were scored, or their windows held none of them. "
            "The next `uv run scorehouse monitor` (or `uv run scorehouse cycle`) reports on them here."
        )
    if switched_off:
        return (
            f"{none}: explanations are switched off in the config (`[explain] enabled = false`), and the latest "
            f"predictions (by {ui.text(coverage.latest_version)}) were stored without them. Set `enabled = true` "
            "(the default): records scored from then on carry explanations, and the next "
            "`uv run scorehouse cycle` reports on them here."
        )
    return (
        f"{none}: the latest predictions (by {ui.text(coverage.latest_version)}) were stored without explanations, "
        "scored before explanations were stored or with `[explain] enabled = false`. With explanations on (the "
        "default), records scored from now on carry them, and the next `uv run scorehouse cycle` reports on them here."
    )


def leading_features(shares: pd.DataFrame, n: int) -> list[str]:
    """The `n` features most often the top reason over all reports (mean share), then alphabetical."""
    means = shares.groupby("feature")["share"].mean().reset_index()
    means = means.sort_values(["share", "feature"], ascending=[False, True])
    return [str(f) for f in means["feature"].head(n)]


def share_lines(shares: pd.DataFrame, leading: list[str]) -> pd.DataFrame:
    """The chart's lines: each leading feature's share per report; every other feature's added into one line."""
    named = shares["feature"].where(shares["feature"].isin(leading), charts.OTHER_FEATURES)
    lines = (
        shares.assign(feature=named)
        .groupby(["window_end", "report_id", "feature"], as_index=False, sort=False)
        .agg(share=("share", "sum"), explained=("explained", "first"), detail=("detail", "first"))
    )
    lines.loc[lines["feature"] == charts.OTHER_FEATURES, "detail"] = "every feature not drawn on its own, together"
    return lines.rename(columns={"window_end": "when"})[["when", "feature", "share", "explained", "detail"]]


# -------------------------------------------------------------------------------------------- words


def percent(value: float) -> str:
    return f"{value:.1%}"


def reading(report: pd.Series, shares: pd.DataFrame, drift: pd.DataFrame) -> None:
    """The latest report in plain words: how many predictions were explained, the top reasons, the drifts."""
    version = ui.text(report["model_version"])
    explained, rows = int(report["explained"]), report["window_rows"]
    of_rows = "" if pd.isna(rows) else f" of the {ui.count(int(rows))} in the window"
    st.markdown(
        f"Latest report: **{version}**, window {ui.when(report['window_start'])} … {ui.when(report['window_end'])}: "
        f"{ui.count(explained)} predictions{of_rows} carried an explanation."
    )
    ranked = shares.sort_values(["share", "feature"], ascending=[False, True])
    ranked = ranked[ranked["share"] > 0]
    named = zip(ranked["feature"].head(NAMED_REASONS), ranked["share"].head(NAMED_REASONS), strict=True)
    firsts = ", ".join(f"**{ui.text(f)}** ({percent(s)})" for f, s in named)
    if len(ranked) > NAMED_REASONS:
        firsts += f", and {len(ranked) - NAMED_REASONS} more feature(s) (below)"
    unraised = 1 - float(ranked["share"].sum())
    rest = f" For {percent(unraised)} no feature raised the risk above the base value." if unraised >= 0.0005 else ""
    st.markdown(f"Top reason, as a share of the {ui.count(explained)} explained predictions: {firsts or 'none'}.{rest}")
    value = float(report["explanation_drift"]) if pd.notna(report["explanation_drift"]) else math.nan
    if math.isnan(value):
        st.warning(no_baseline(report["model_version"]))
        return
    st.markdown(
        f"Explanation drift **{value:.3f}**: {percent(value)} of the importance moved between features against "
        f"{version}'s reference set ({ui.count(int(report['reference_explained']))} rows with contributions). "
        "Importance is each feature's share of the total mean |contribution|; 0 means the same features drive the "
        "scores in the same proportions, 1 entirely different ones."
    )
    if not drift.empty:
        moved = drift.iloc[int(drift["change"].abs().to_numpy().argmax())]
        st.markdown(
            f"The largest contribution drift: **{ui.text(moved['feature'])}**, {moved['change']:+.4f} log-odds "
            f"({ui.text(moved['detail'])})."
        )
    st.caption(
        "Contributions are in log-odds of the positive class (base value + contributions = the score's log-odds): "
        "a contribution drift of +0.10 means the feature moves a score 0.10 log-odds more, on average and in "
        "either direction, than it did on the reference set. These numbers inform: the alerts stay the drift and "
        "quality tests of the Monitoring page."
    )


# ------------------------------------------------------------------------------------------ sections


def top_reasons_over_time(shares: pd.DataFrame) -> None:
    st.subheader("Top reasons over time")
    leading = leading_features(
        shares, SHOWN_FEATURES - 1 if shares["feature"].nunique() > SHOWN_FEATURES else SHOWN_FEATURES
    )
    lines = share_lines(shares, leading)
    drawn = [*leading, charts.OTHER_FEATURES] if (lines["feature"] == charts.OTHER_FEATURES).any() else leading
    st.altair_chart(charts.shares_over_time(lines, drawn), width="stretch")
    st.caption(
        "Each line: the share of a report's explained predictions whose first reason code (the feature that raised "
        f"the score most) was that feature; the {len(leading)} features most often first are drawn one by one. "
        "What is left up to 100 % are predictions no feature raised above the base value."
    )
    with st.expander("Every report's shares"):
        wide = shares.pivot_table(
            index=["window_end", "model_version", "explained"], columns="feature", values="share", sort=False
        ).reset_index()
        st.dataframe(
            wide,
            hide_index=True,
            width="stretch",
            column_config={
                "window_end": ui.time_column("window to"),
                "model_version": "version",
                "explained": st.column_config.NumberColumn("explained predictions", format="%d"),
                **{f: st.column_config.NumberColumn(f, format="percent") for f in shares["feature"].unique()},
            },
        )


def report_labels(reports: pd.DataFrame) -> dict[str, str]:
    """What the report picker shows for each report id: its window end, version and explained predictions."""
    return {
        str(report_id): f"{ui.when(end)} · {version} · {explained:,} explained"
        for report_id, end, version, explained in reports[
            ["report_id", "window_end", "model_version", "explained"]
        ].to_numpy()
    }


def contribution_drift(reports: pd.DataFrame) -> None:
    st.subheader("Contribution drift")
    compared = reports[reports["features_compared"] > 0]
    if compared.empty:
        st.info(f"No report measured it. {no_baseline(reports.iloc[-1]['model_version'])}")
        return
    labels = report_labels(compared.iloc[::-1])
    chosen = st.selectbox("Report", list(labels), format_func=labels.__getitem__, key="explanations.report")
    report = compared[compared["report_id"] == chosen].iloc[0]
    drift = ask(queries.report_contribution_drift, chosen)
    st.altair_chart(charts.contribution_drift_bars(drift), width="stretch")
    st.caption(
        f"Each feature's mean |contribution| over the {ui.count(int(report['explained']))} explained predictions of "
        f"the window minus the same over {ui.text(report['model_version'])}'s reference set "
        f"({ui.count(int(report['reference_explained']))} rows), in log-odds: right of zero the feature weighs more "
        "in the scores than it did in the reference, left of zero less."
    )
    feature_trend(drift)


def feature_trend(drift: pd.DataFrame) -> None:
    """One feature's contribution drift over every report, against the reference (no change, dashed)."""
    by_size = drift.assign(size=drift["change"].abs()).sort_values(["size", "feature"], ascending=[False, True])
    feature = str(st.selectbox("Feature", list(by_size["feature"]), key="explanations.feature"))
    trend = ask(queries.contribution_drift_trend, feature)
    lines = pd.DataFrame(
        {
            "when": trend["window_end"],
            "series": f"{feature}: contribution drift",
            "value": trend["change"],
            "status": "info",
            "detail": trend["detail"],
        }
    )
    unchanged = pd.DataFrame({"when": trend["window_end"], "series": "the reference set (no change)", "value": 0.0})
    st.altair_chart(charts.over_time(lines, y_title="change (log-odds)", reference=unchanged), width="stretch")
    grew = int((trend["change"] > 0).sum())
    st.caption(
        f"{ui.text(feature)} weighed more than in the reference in {ui.count(grew)} of {ui.count(len(trend))} "
        "report(s)."
    )


def explanation_drift(reports: pd.DataFrame) -> None:
    st.subheader("Explanation drift over time")
    measured = reports[reports["explanation_drift"].notna()]
    if measured.empty:
        st.info(f"No report measured it. {no_baseline(reports.iloc[-1]['model_version'])}")
        return
    lines = pd.DataFrame(
        {
            "when": measured["window_end"],
            "series": "explanation drift",
            "value": measured["explanation_drift"],
            "status": measured["status"],
            "detail": measured["detail"],
        }
    )
    bars = measured[measured["threshold"].notna()]
    reference = pd.DataFrame({"when": bars["window_end"], "series": charts.THRESHOLD, "value": bars["threshold"]})
    st.altair_chart(
        charts.over_time(lines, y_title="share of importance moved", reference=reference, y_domain=drift_scale(lines)),
        width="stretch",
    )
    st.caption(f"{statuses(measured)} {bar_words(bars)}")
    with st.expander("Each report: explained predictions, reference rows, drift and status"):
        st.dataframe(
            measured[
                [
                    "window_end",
                    "model_version",
                    "explained",
                    "reference_explained",
                    "explanation_drift",
                    "threshold",
                    "status",
                    "detail",
                ]
            ],
            hide_index=True,
            width="stretch",
            column_config={
                "window_end": ui.time_column("window to"),
                "model_version": "version",
                "explained": st.column_config.NumberColumn("explained predictions", format="%d"),
                "reference_explained": st.column_config.NumberColumn("reference rows", format="%d"),
                "explanation_drift": st.column_config.NumberColumn("explanation drift", format="%.4f"),
                "detail": st.column_config.TextColumn("detail", width="large"),
            },
        )


def drift_scale(lines: pd.DataFrame) -> tuple[float, float]:
    """From 0 (nothing moved) to a little above the largest value, at least 0.1 and at most 1: small drifts stay
    visible, and the axis never suggests more than moved."""
    return (0.0, min(1.0, max(0.1, 1.2 * float(lines["value"].max()))))


def statuses(measured: pd.DataFrame) -> str:
    """The reports' statuses in words: how many alerted, else that the rows only inform."""
    alerted = int((measured["status"] == "alert").sum())
    if alerted:
        return f"{ui.count(alerted)} of {ui.count(len(measured))} report(s) alerted on it (red points)."
    kinds = ", ".join(sorted(set(measured["status"].dropna()))) or "none"
    return f"Status of all {ui.count(len(measured))} report(s): {ui.text(kinds)}."


def bar_words(bars: pd.DataFrame) -> str:
    if bars.empty:
        return "These rows carry no bar: they inform, and raise no alert."
    return f"Dashed red: the bar the reports compared it with (latest {bars['threshold'].iloc[-1]:.3f})."


def render() -> None:
    st.title("Explanations")
    st.caption("What drives the scores, as each monitoring report measured it: read from the `monitoring` rows.")
    reports = ask(queries.explanation_reports)
    if reports.empty:
        st.info(ui.NO_REPORTS)
        return
    explained = reports[reports["explained"] > 0]
    if explained.empty:
        st.info(nothing_explained(ask(queries.explained_predictions), len(reports), explanations_switched_off()))
        return
    latest = explained.iloc[-1]
    shares = ask(queries.top_reason_shares)
    latest_drift = ask(queries.report_contribution_drift, str(latest["report_id"]))
    reading(latest, shares[shares["report_id"] == latest["report_id"]], latest_drift)
    top_reasons_over_time(shares)
    contribution_drift(explained)
    explanation_drift(explained)


render()
