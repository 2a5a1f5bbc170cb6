"""Models: the registry. Every version with its hold-out metrics, which one was champion when, every
promotion and rejection with the paired test it rests on, and every event with its reason."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts, data, explanations, ui
from dashboard.data import ask
from warehouse import queries

METRIC_COLUMNS = {
    name: st.column_config.NumberColumn(name.replace("_", " "), format="%.4f")
    for name in ("roc_auc", "f1", "precision", "recall", "balanced_accuracy")
}


SHARED_ROWS_COLUMNS: dict[str, Any] = {
    "decided_on": "decided on",
    "challenger_on_shared_rows": st.column_config.NumberColumn("it, on shared rows", format="%.4f"),
    "against": "against",
    "against_on_shared_rows": st.column_config.NumberColumn("champion, on shared rows", format="%.4f"),
    "gain": st.column_config.NumberColumn("gain", format="%+.4f"),
    "low": st.column_config.NumberColumn("gain from", format="%+.4f"),
    "high": st.column_config.NumberColumn("gain to", format="%+.4f"),
    "rows_compared": st.column_config.NumberColumn("rows compared", format="%d"),
}


def decided_sentence(row: pd.Series) -> str:
    """One version's decision in words: both models' metric on the same rows and the gain's interval."""
    return (
        f"**{ui.text(row['model_version'])}** was {ui.text(row['status'])} on {ui.text(row['decided_on'])}: "
        f"{row['challenger_on_shared_rows']:.3f} against {ui.text(row['against'])}'s "
        f"{row['against_on_shared_rows']:.3f} on the same {ui.count(int(row['rows_compared']))} fresh rows, a gain "
        f"of {row['gain']:+.3f} (interval {row['low']:+.3f} to {row['high']:+.3f})."
    )


def versions(table: pd.DataFrame, prefect_ui: str | None) -> None:
    st.subheader("Versions")
    st.caption(
        "The metric columns are measured on different rows for each version (the first on its training hold-out, "
        "each challenger on the fresh rows of its own decision), so they do not compare versions. What decided "
        "is the challenger against the champion on the same rows: those numbers, with the gain's interval, are "
        "in the columns after them and in the sentences below."
    )
    st.dataframe(
        ui.with_run_links(table, prefect_ui),
        hide_index=True,
        width="stretch",
        column_config={
            "model_version": "version",
            "trained_at": ui.time_column("trained at"),
            **METRIC_COLUMNS,
            **SHARED_ROWS_COLUMNS,
            "reason": ui.long_text_column("reason"),
            "flow_run_id": ui.run_column(prefect_ui),
        },
    )
    ui.full_text(table, "reason", lambda row: f"**{ui.text(row['model_version'])}**", "Each version's reason")
    st.download_button(
        "Download the versions as CSV",
        data=ui.csv_bytes(table),
        file_name="model_versions.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
        key="models.download",
    )
    decided = table[table["decided_on"].notna() & table["challenger_on_shared_rows"].notna()]
    for _, row in decided.iterrows():
        st.markdown(decided_sentence(row))


def champions(periods: pd.DataFrame) -> None:
    st.subheader("Which version was champion when")
    if periods.empty:
        st.info("No version was promoted yet.")
        return
    st.altair_chart(charts.champion_timeline(periods), width="stretch")
    st.dataframe(
        periods,
        hide_index=True,
        width="stretch",
        column_config={
            "model_version": "version",
            "champion_from": ui.time_column("from"),
            "champion_until": ui.time_column("until"),
            "reason": ui.long_text_column("reason"),
        },
    )
    ui.full_text(periods, "reason", lambda row: f"**{ui.text(row['model_version'])}**", "Why each became champion")


def decisions(table: pd.DataFrame) -> None:
    st.subheader("Promotion decisions")
    st.caption(
        "Each challenger against the champion on the same fresh rows (neither trained on them, no earlier decision "
        "used them): the gain with its interval and p-value, the guard metric, and the rows and positives behind it."
    )
    if table.empty:
        st.info("No challenger was decided on yet.")
        return
    numbers = {
        "challenger_on_shared_rows": st.column_config.NumberColumn("challenger, shared rows", format="%.4f"),
        "champion_on_shared_rows": st.column_config.NumberColumn("champion, shared rows", format="%.4f"),
        **{
            name: st.column_config.NumberColumn(name.replace("_", " "), format="%+.4f")
            for name in ("gain", "low", "high", "guard_gain")
        },
        "reason": ui.long_text_column("reason"),
    }
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "event_at": ui.time_column("when"),
            "model_version": "version",
            "p_value": st.column_config.NumberColumn("p-value", format="%.3g"),
            "guard_p_value": st.column_config.NumberColumn("guard p-value", format="%.3g"),
            **numbers,
        },
    )
    ui.full_text(
        table,
        "reason",
        lambda row: f"**{ui.text(row['model_version'])}** {ui.text(row['event'])}, {ui.when(row['event_at'])}",
        "Each decision's reason",
    )


def events(table: pd.DataFrame, prefect_ui: str | None) -> None:
    st.subheader("Decisions")
    st.caption("Every registry event, newest first, with its reason and the Prefect run that recorded it.")
    st.dataframe(
        ui.with_run_links(table, prefect_ui),
        hide_index=True,
        width="stretch",
        column_config={
            "event_at": ui.time_column("when"),
            "model_version": "version",
            "reason": ui.long_text_column("reason"),
            **METRIC_COLUMNS,
            "flow_run_id": ui.run_column(prefect_ui),
        },
    )
    ui.full_text(
        table,
        "reason",
        lambda row: f"**{ui.text(row['model_version'])}** {ui.text(row['event'])}, {ui.when(row['event_at'])}",
        "Each event's reason",
    )


def render() -> None:
    st.title("Models")
    table = ask(queries.model_versions)
    if table.empty:
        st.info(ui.NO_MODELS)
        return
    current = table[table["status"] == "champion"]
    if not current.empty:
        st.markdown(
            f"Champion now: **{ui.text(current.iloc[-1]['model_version'])}**, of {len(table)} version(s) trained."
        )
    prefect_ui = data.settings().prefect_ui()
    versions(table, prefect_ui)
    champions(ask(queries.champion_periods))
    decisions(ask(queries.decisions))
    events(ask(queries.registry_events), prefect_ui)
    explanations.importance()


render()
