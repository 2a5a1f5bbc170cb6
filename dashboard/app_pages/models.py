"""Models: the registry. Every version with its hold-out metrics, which one was champion when, every
promotion and rejection with the paired test it rests on, and every event with its reason."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, explanations, ui
from dashboard.data import ask
from warehouse import queries

METRIC_COLUMNS = {
    name: st.column_config.NumberColumn(name.replace("_", " "), format="%.4f")
    for name in ("roc_auc", "f1", "precision", "recall", "balanced_accuracy")
}


def versions(table: pd.DataFrame) -> None:
    st.subheader("Versions")
    st.caption("Metrics on each version's own hold-out set, when it was trained.")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "model_version": "version",
            "trained_at": ui.time_column("trained at"),
            **METRIC_COLUMNS,
        },
    )


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
        },
    )


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
        name: st.column_config.NumberColumn(name.replace("_", " "), format="%.4f")
        for name in ("gain", "low", "high", "guard_gain")
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


def events(table: pd.DataFrame) -> None:
    st.subheader("Decisions")
    st.caption("Every registry event, newest first, with its reason.")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "event_at": ui.time_column("when"),
            "model_version": "version",
            **METRIC_COLUMNS,
        },
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
    versions(table)
    champions(ask(queries.champion_periods))
    decisions(ask(queries.decisions))
    events(ask(queries.registry_events))
    explanations.importance()


render()
