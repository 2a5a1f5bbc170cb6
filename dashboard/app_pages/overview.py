"""Overview: how much is stored, the champion, the last batches, the last alert and the quarantine."""

from __future__ import annotations

import streamlit as st

from dashboard import data, ui
from dashboard.data import ask
from warehouse import queries


def totals(counts: queries.Totals) -> None:
    columns = st.columns(6)
    columns[0].metric("Records", ui.count(counts.records))
    columns[1].metric("Predictions", ui.count(counts.predictions))
    columns[2].metric("Labels received", ui.count(counts.labels))
    columns[3].metric("Quarantined rows", ui.count(counts.quarantined_rows))
    columns[4].metric("Model versions", ui.count(counts.model_versions))
    columns[5].metric("Monitoring reports", ui.count(counts.reports))


def champion(current: queries.Champion | None) -> None:
    st.subheader("Champion")
    if current is None:
        st.info(ui.NO_MODELS)
        return
    st.markdown(f"**{ui.text(current.model_version)}** in production since {ui.when(current.since)}")
    st.markdown(
        f"Hold-out ROC AUC **{ui.decimal(current.roc_auc)}**, F1 {ui.decimal(current.f1)}, "
        f"balanced accuracy {ui.decimal(current.balanced_accuracy)}; threshold {ui.decimal(current.threshold, 2)}"
    )
    if current.reason:
        st.caption(ui.text(current.reason))


def last_batches(ingested: queries.Batch | None, scored: queries.Batch | None) -> None:
    st.subheader("Last batch")
    if ingested is None:
        st.info("Nothing ingested yet: drop files into the incoming folder and run `uv run scorehouse cycle`.")
    else:
        made_by = ui.run_sentence(data.settings().prefect_ui(), ingested.flow_run_id)
        st.markdown(
            f"Ingested {ui.code(ingested.source)}: **{ui.count(ingested.rows)}** records, "
            f"{ui.when(ingested.written_at)}{made_by}"
        )
    if scored is None:
        st.info(ui.NO_PREDICTIONS)
    else:
        st.markdown(
            f"Scored **{ui.count(scored.rows)}** records with **{ui.text(scored.source)}**, "
            f"{ui.when(scored.written_at)}"
        )


def last_alert(alert: queries.Alert | None, reports: int) -> None:
    st.subheader("Last alert")
    if reports == 0:
        st.info(ui.NO_REPORTS)
    elif alert is None:
        st.success(f"No alert in {ui.count(reports)} monitoring reports.")
    else:
        column = f" ({ui.text(alert.column_name)})" if alert.column_name else ""
        st.error(
            f"**{ui.text(alert.metric)}{column} = {ui.decimal(alert.value)}** "
            f"(threshold {ui.decimal(alert.threshold)}) "
            f"for {ui.text(alert.model_version)}, {ui.when(alert.run_at)}"
        )
        if alert.detail:
            st.caption(ui.text(alert.detail))
        st.page_link("app_pages/monitoring.py", label="Monitoring: trends and reports", icon=":material/monitoring:")


def quarantine(rows: int) -> None:
    st.subheader("Quarantine")
    if rows == 0:
        st.markdown("No row has been refused.")
        return
    st.markdown(f"**{ui.count(rows)}** rows refused. The commonest reasons:")
    st.dataframe(
        ask(queries.quarantine_reasons, 5),
        hide_index=True,
        column_config={"column_name": "column", "last_seen": ui.time_column("last seen")},
    )


st.title("Scorehouse")
st.caption("The model's output, published as data: what the pipeline stored. Nothing here calls a model.")
counts = ask(queries.totals)
totals(counts)
left, middle, right = st.columns(3)
with left:
    champion(ask(queries.champion))
with middle:
    last_batches(ask(queries.last_ingest), ask(queries.last_scoring))
with right:
    last_alert(ask(queries.last_alert), counts.reports)
quarantine(counts.quarantined_rows)
