"""Monitoring: is the model drifting? Alert episodes, drift and quality over time with their thresholds, the
estimated (CBPE) against the realised quality and whether the estimate can be trusted, the alerts, and
every Evidently report to open."""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from dashboard import charts, data, ui
from dashboard.data import ask
from warehouse import queries

Days = tuple[date | None, date | None]  # the UTC days of window ends the charts show (None: unbounded)
DRIFT_NAMES = {"drift_share_features": "features", "drift_share_embedding": "embedding columns"}
# The one notion of alert (what opens an episode and may retrain), as people read it.
ALERT_NAMES = {"drift": "drift", "prediction_drift": "prediction drift", "quality": "quality"}
QUALITY_NAMES = {
    "roc_auc": "ROC AUC",
    "f1": "F1",
    "balanced_accuracy": "balanced accuracy",
    "precision": "precision",
    "recall": "recall",
}


def as_lines(rows: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """Monitoring rows as chart lines: one series per metric, named for people and in the order of `names`
    (which sets their colours); undefined values dropped."""
    picked = rows[rows["metric"].isin(list(names)) & rows["value"].notna()]
    picked = picked.sort_values("metric", key=lambda metric: metric.map(list(names).index), kind="stable")
    return pd.DataFrame(
        {
            "when": picked["window_end"],
            "series": picked["metric"].map(names),
            "value": picked["value"],
            "status": picked["status"],
            "detail": picked["detail"],
        }
    )


def thresholds(rows: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The alert threshold each report compared these metrics with (where it set one)."""
    picked = rows[rows["metric"].isin(metrics) & rows["threshold"].notna()]
    frame = picked.groupby("window_end", as_index=False)["threshold"].max()
    return pd.DataFrame({"when": frame["window_end"], "series": charts.THRESHOLD, "value": frame["threshold"]})


def holdout(rows: pd.DataFrame, versions: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The hold-out value of the version each report monitored: what the realised value is compared with."""
    reports = rows.drop_duplicates("report_id")[["window_end", "model_version"]]
    joined = reports.merge(versions[["model_version", metric]], on="model_version", how="inner").dropna()
    return pd.DataFrame({"when": joined["window_end"], "series": "hold-out of the version", "value": joined[metric]})


def latest(reports: pd.DataFrame) -> None:
    last = reports.iloc[0]
    window = f"{ui.when(last['window_start'])} … {ui.when(last['window_end'])}"
    sampled = " (sampled)" if last["sampled"] else ""
    st.markdown(
        f"Latest report: **{ui.text(last['model_version'])}**, window {window}, {ui.count(int(last['rows'] or 0))} rows"
        f"{sampled}."
    )
    drifted = int(last["drifted_columns"] or 0)
    columns = f" {ui.count(drifted)} drifted column(s) (see the report below)." if drifted else ""
    if last["alerts"]:
        named = ", ".join(ui.text(ALERT_NAMES.get(a, a)) for a in str(last["alerted"]).split(", "))
        st.error(f"Alerts in the latest report: {named}.{columns}")
    else:
        st.success(f"No alert in the latest report.{columns}")


def drift(series: pd.DataFrame, days: Days) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Drift share")
        st.caption(
            "Share of the feature (and embedding) columns that drifted: significant (K-S or chi-square test, "
            "corrected for the number of columns) and material (distance at or above its bar)."
        )
        values = as_lines(series, DRIFT_NAMES)
        st.altair_chart(
            charts.over_time(
                values,
                y_title="share of columns drifted",
                reference=thresholds(series, list(DRIFT_NAMES)),
                y_domain=(0, 1),
            ),
            width="stretch",
        )
    with right:
        prediction_drift(days)


def prediction_drift(days: Days) -> None:
    """One comparable quantity over time (the distance, in hold-out standard deviations) against its materiality
    bar; the test's significance apart, in the table, with the test each point used."""
    st.subheader("Prediction drift")
    points = ui.within_days(ask(queries.prediction_drift), "window_end", *days)
    st.caption(
        "How far the scores moved from the hold-out scores: the normed Wasserstein distance (in hold-out standard "
        "deviations) at every window size, against its materiality bar (dashed). A point is red when the shift is "
        "also significant (two-sample K-S test): both are needed for an alert."
    )
    lines = pd.DataFrame(
        {
            "when": points["window_end"],
            "series": "scores: distance",
            "value": points["distance"],
            "status": points["verdict"].map(lambda v: "alert" if v == "drift" else "ok"),
            "detail": points["test"] + ", p = " + points["p_value"].map(lambda p: "—" if pd.isna(p) else f"{p:.3g}"),
        }
    )
    bars = pd.DataFrame({"when": points["window_end"], "series": charts.THRESHOLD, "value": points["material_at"]})
    st.altair_chart(charts.over_time(lines, y_title="distance (hold-out sds)", reference=bars), width="stretch")
    with st.expander("Each point: the test, the distance, the p-value and the verdict"):
        st.dataframe(
            points,
            hide_index=True,
            width="stretch",
            column_config={
                "window_end": ui.time_column("window to"),
                "model_version": "version",
                "distance": st.column_config.NumberColumn(format="%.4f"),
                "material_at": st.column_config.NumberColumn("material at", format="%.3g"),
                "p_value": st.column_config.NumberColumn("p-value", format="%.3g"),
                "significant_below": st.column_config.NumberColumn("significant below", format="%.3g"),
            },
        )


def column_trend(days: Days) -> None:
    """One column's drift over time: its distance (the statistic) against the materiality bar (the threshold),
    red where it drifted, and each point's numbers in a table."""
    tested = ask(queries.drift_columns_tested)
    if not tested:
        return
    st.subheader("One column's drift over time")
    column = st.selectbox("Column", tested, key="monitoring.trend_column")
    trend = ui.within_days(ask(queries.column_drift_trend, str(column)), "window_end", *days)
    lines = pd.DataFrame(
        {
            "when": trend["window_end"],
            "series": f"{column}: distance",
            "value": trend["distance"],
            "status": trend["drifted"].map({True: "alert", False: "ok"}),
            "detail": "p = " + trend["p_value"].map(lambda p: "—" if pd.isna(p) else f"{p:.3g}"),
        }
    )
    bars = pd.DataFrame({"when": trend["window_end"], "series": charts.THRESHOLD, "value": trend["material_at"]})
    st.altair_chart(charts.over_time(lines, y_title="distance", reference=bars), width="stretch")
    st.caption(
        f"{ui.count(int(trend['drifted'].sum()))} of {ui.count(len(trend))} reports in the range found "
        f"{ui.text(column)} drifted (significant and material): its distance from the reference (normed Wasserstein "
        "for a number, Jensen-Shannon for a category) against the materiality bar (dashed)."
    )
    with st.expander(f"Each report's numbers for {column}"):
        st.dataframe(
            trend,
            hide_index=True,
            width="stretch",
            column_config={
                "window_end": ui.time_column("window to"),
                "model_version": "version",
                "distance": st.column_config.NumberColumn(format="%.4f"),
                "material_at": st.column_config.NumberColumn("material at", format="%.3g"),
                "p_value": st.column_config.NumberColumn("p-value", format="%.3g"),
                "significant_below": st.column_config.NumberColumn("significant below", format="%.3g"),
            },
        )


def quality_chart(series: pd.DataFrame, versions: pd.DataFrame, metric: str) -> None:
    name = QUALITY_NAMES[metric]
    lines = as_lines(
        series,
        {
            metric: "realised (labelled rows)",
            f"estimated_{metric}_labelled": "estimated, labelled rows",
            f"estimated_{metric}": "estimated, unlabelled rows",
        },
    )
    reference = pd.concat([holdout(series, versions, metric), thresholds(series, [metric])], ignore_index=True)
    st.markdown(f"**{ui.text(name)}**")
    st.altair_chart(charts.over_time(lines, y_title=name, reference=reference), width="stretch")


def quality(series: pd.DataFrame, versions: pd.DataFrame) -> None:
    st.subheader("Quality: estimated and realised")
    st.caption(
        "Realised on the rows whose label arrived; estimated (CBPE, from the scores alone) on the rows without "
        "one and, to check the estimate, on the labelled rows too. Dashed: the monitored version's hold-out value."
    )
    if series[series["metric"].isin(list(QUALITY_NAMES))]["value"].notna().sum() == 0:
        st.info(
            "No realised quality in the reports shown: it needs labels for the rows of a window. Label files (the "
            "id column, `label`, `labelled_at`) dropped into the feedback folder are collected by "
            "`uv run scorehouse cycle`."
        )
    columns = st.columns(3)
    for column, metric in zip(columns, ["roc_auc", "f1", "balanced_accuracy"], strict=True):
        with column:
            quality_chart(series, versions, metric)
    with st.expander("Precision and recall"):
        for column, metric in zip(st.columns(2), ["precision", "recall"], strict=True):
            with column:
                quality_chart(series, versions, metric)


def episodes() -> None:
    st.subheader("Alert episodes")
    st.caption(
        "An alert opens an episode once and keeps it open while the condition holds; it retrains once per episode "
        "(after the cool-down) and closes when the condition clears."
    )
    listed = ask(queries.episodes)
    if listed.empty:
        st.success("No alert episode so far.")
        return
    still_open = listed[listed["state"] == "open"]
    if not still_open.empty:
        st.error(f"Open: {', '.join(ui.text(ALERT_NAMES.get(a, a)) for a in still_open['alert'])}")
    st.dataframe(
        listed.drop(columns=["episode_id"]),
        hide_index=True,
        width="stretch",
        column_config={
            "opened_at": ui.time_column("opened"),
            "retrained_at": ui.time_column("retrained"),
            "resolved_at": ui.time_column("resolved"),
            "model_version": "version",
            "opened_because": ui.long_text_column("why"),
        },
    )
    ui.full_text(
        listed,
        "opened_because",
        lambda row: f"{ui.text(ALERT_NAMES.get(row['alert'], row['alert']))}, opened {ui.when(row['opened_at'])}",
        "Why each episode opened",
    )


def cbpe_reliability() -> None:
    """Whether the CBPE estimate held where labels arrived; a flagged gap means the estimate cannot be trusted."""
    gaps = ask(queries.cbpe_reliability)
    if gaps.empty or gaps["gap"].notna().sum() == 0:
        return
    last = gaps.iloc[-1]
    if bool(last["unreliable"]):
        st.warning(
            f"The quality estimate (CBPE) is unreliable: on {ui.count(int(last['labels']))} labelled rows it missed "
            f"the realised ROC AUC by {last['gap']:+.3f} (bound {last['bound']:g}). The relation between features "
            "and target has probably changed; trust realised quality only."
        )
    with st.expander("CBPE: estimated minus realised ROC AUC, per report"):
        st.dataframe(
            gaps,
            hide_index=True,
            width="stretch",
            column_config={"run_at": ui.time_column("run at"), "detail": ui.long_text_column("detail")},
        )
        ui.full_text(gaps, "detail", lambda row: f"report of {ui.when(row['run_at'])}", "Each report's CBPE detail")


def alerts() -> None:
    st.subheader("Alerts")
    st.caption(
        "An alert is a report's drift (feature or embedding drift share above its bar), prediction drift or quality "
        "test; repeated ones make one episode (above). A drifted column is not an alert by itself."
    )
    listed = ask(queries.alerts)
    if listed.empty:
        st.success("No alert so far.")
    else:
        st.dataframe(
            listed.assign(alert=listed["alert"].map(lambda a: ALERT_NAMES.get(a, a))),
            hide_index=True,
            width="stretch",
            column_config={
                "run_at": ui.time_column("run at"),
                "model_version": "version",
                "p_value": st.column_config.NumberColumn("p-value", format="%.3g"),
                "detail": ui.long_text_column("detail"),
            },
        )
        ui.full_text(
            listed,
            "detail",
            lambda row: f"{ui.when(row['run_at'])}, {ui.text(ALERT_NAMES.get(row['alert'], row['alert']))}",
            "Each alert's detail",
        )
    columns = ask(queries.drifted_columns)
    with st.expander(f"Drifted columns ({ui.count(len(columns))} across the reports)"):
        if columns.empty:
            st.markdown("No column drifted so far.")
        else:
            st.dataframe(
                columns,
                hide_index=True,
                width="stretch",
                column_config={
                    "run_at": ui.time_column("run at"),
                    "column_name": "column",
                    "detail": ui.long_text_column("detail"),
                },
            )
            ui.full_text(
                columns,
                "detail",
                lambda row: f"{ui.when(row['run_at'])}, {ui.code(row['column_name'])}",
                "Each drifted column's detail",
            )


def report_labels(reports: pd.DataFrame) -> dict[str, str]:
    """What the report picker shows for each report id: its window end, version and alerts."""
    return {
        str(report_id): f"{ui.when(end)} · {version} · {alerts} alert(s), {drifted} drifted column(s)"
        for report_id, end, version, alerts, drifted in reports[
            ["report_id", "window_end", "model_version", "alerts", "drifted_columns"]
        ].to_numpy()
    }


def open_report(reports: pd.DataFrame, days: Days) -> None:
    st.subheader("Evidently reports")
    prefect_ui = data.settings().prefect_ui()
    st.dataframe(
        ui.with_run_links(reports.drop(columns=["report_id"]), prefect_ui),
        hide_index=True,
        width="stretch",
        column_config={
            "run_at": ui.time_column("run at"),
            "window_start": ui.time_column("window from"),
            "window_end": ui.time_column("window to"),
            "retrain_due": st.column_config.CheckboxColumn("retrain due"),
            "report_path": "file",
            "flow_run_id": ui.run_column(prefect_ui),
        },
    )
    download_rows(days)
    labels = report_labels(reports)
    chosen = st.selectbox("Report", list(labels), format_func=labels.__getitem__, key="monitoring.report")
    path = str(reports.set_index("report_id").loc[chosen, "report_path"])
    made_by = ui.run_sentence(prefect_ui, reports.set_index("report_id").loc[chosen, "flow_run_id"])
    if made_by:
        st.markdown(f"This report was made{made_by}.")
    drifted = ask(queries.column_drift, chosen)
    if not drifted.empty:
        with st.expander(f"Every column in this report ({int((drifted['status'] == 'alert').sum())} drifted)"):
            st.dataframe(
                drifted,
                hide_index=True,
                width="stretch",
                column_config={"column_name": "column", "detail": ui.long_text_column("detail")},
            )
            ui.full_text(drifted, "detail", lambda row: ui.code(row["column_name"]), "Each column's detail")
    report = data.report_file(path)
    if report is None:
        st.warning(f"The report file {ui.code(path)} is gone; its numbers are still in the charts above.")
        return
    st.download_button(
        "Download the report (HTML)", report.read_bytes, file_name=report.name, mime="text/html", on_click="ignore"
    )
    st.caption(
        "The Evidently report applies Evidently's own per-column drift tests, without Scorehouse's materiality bar "
        "or correction for many columns: its count of drifted columns can differ. Scorehouse's verdicts are the "
        "ones above."
    )
    if st.toggle("Show the report here", key="monitoring.show_report"):
        st.iframe(report, height=900, alt=f"Evidently report {report.name}")


def download_rows(days: Days) -> None:
    """Every monitoring row of the reports whose window ended in the range, as CSV, made when clicked."""
    st.download_button(
        "Download the monitoring rows of this range as CSV",
        data=data.export_monitoring_csv(*days),
        file_name="monitoring.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
        key="monitoring.download",
    )
    st.caption(
        "Every number each report of the range stored (per column too), with its threshold, status, p-value, detail, "
        "report file and Prefect run."
    )


def time_range(reports: pd.DataFrame) -> Days:
    """The UTC days of window ends the charts show: every report's by default, narrowed by the viewer."""
    ends = pd.to_datetime(reports["window_end"], utc=True).dt.date
    first, last = ends.min(), ends.max()
    picked = st.date_input(
        "Windows ending between (UTC days)",
        value=(first, last),
        min_value=first,
        max_value=last,
        key="monitoring.days",
        help="Narrows the charts below and the CSV download of the monitoring rows.",
    )
    start, end = ui.day_range(picked)
    shown = int(ends.between(start or first, end or last).sum())
    st.caption(f"The charts show {ui.count(shown)} of {ui.count(len(reports))} reports.")
    return start, end


def render() -> None:
    st.title("Monitoring")
    series = ask(queries.monitoring_series)
    if series.empty:
        st.info(ui.NO_REPORTS)
        return
    reports = ask(queries.reports)
    latest(reports)
    episodes()
    days = time_range(reports)
    series = ui.within_days(series, "window_end", *days)
    drift(series, days)
    column_trend(days)
    quality(series, ask(queries.model_versions))
    cbpe_reliability()
    alerts()
    open_report(reports, days)


render()
