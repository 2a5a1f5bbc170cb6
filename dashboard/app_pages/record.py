"""Record: one record by id. What was predicted for it, by which model and when, whether it was right
once its label arrived, where its score sits, and its features as they were ingested."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts, explanations, ui
from dashboard.data import ask
from warehouse import queries


def chosen_id() -> str:
    """The id typed, or given in the link (`record?record_id=...`, a recently scored id's link): a link naming
    another record than the last one seen replaces what was typed, and the address follows what is typed."""
    linked = st.query_params.get("record_id", "")
    if st.session_state.get("record.linked") != linked:
        st.session_state["record_id"] = linked
        st.session_state["record.linked"] = linked
    typed = st.text_input("Record id", key="record_id", placeholder="the dataset's id, exactly").strip()
    if typed != linked:
        if typed:
            st.query_params["record_id"] = typed
        else:
            del st.query_params["record_id"]
        st.session_state["record.linked"] = typed
    return typed


def recently_scored() -> None:
    """The latest scored records, each a link to its page."""
    ids = ask(queries.recent_record_ids, 3)
    if not ids:
        return
    st.caption("Recently scored (open one):")
    for column, record_id in zip(st.columns(len(ids)), ids, strict=True):
        column.page_link(
            "app_pages/record.py",
            label=ui.code(record_id),
            icon=":material/search:",
            query_params={"record_id": record_id},
        )


def verdict(history: pd.DataFrame, labels: pd.DataFrame) -> None:
    """The latest prediction in one sentence; then whether the prediction in force when the outcome happened was
    right. Predictions made after the label was known (a later version may have trained on it) are not judged."""
    latest = history.iloc[-1]
    st.markdown(
        f"**{ui.text(latest['model_version'])}** scored it **{latest['score']:.4f}**: "
        f"predicted **{ui.text(latest['label'])}** "
        f"(threshold {latest['threshold']:.2f}), {ui.when(latest['scored_at'])}."
    )
    if labels.empty:
        st.info(f"No label for this record yet, so nobody knows yet whether it was right. {ui.NO_LABELS}")
        return
    truth = labels.iloc[0]
    said = f"True label **{ui.text(truth['label'])}** (labelled {ui.when(truth['labelled_at'])})"
    judged = history[history["verdict"].isin(["right", "wrong"])]
    later = history[history["verdict"] == queries.MADE_AFTER_LABEL]
    after = (
        f" {ui.text(', '.join(later['model_version']))} scored it after the label was known (and may have trained "
        "on it): not judged."
        if not later.empty
        else ""
    )
    if judged.empty:
        st.warning(f"{said}: every prediction for it was made after the label was known, so none is judged.{after}")
        return
    in_force = judged.iloc[-1]
    right = in_force["verdict"] == "right"
    message = (
        f"{said}: the prediction in force then, **{ui.text(in_force['label'])}** by "
        f"**{ui.text(in_force['model_version'])}** ({ui.when(in_force['scored_at'])}), was "
        + ("**right**." if right else "**wrong**.")
    )
    (st.success if right else st.error)(message + after)


def predictions(history: pd.DataFrame, labels: pd.DataFrame) -> None:
    st.subheader("Every prediction made for it")
    st.dataframe(
        history,
        hide_index=True,
        width="stretch",
        column_config={
            "model_version": "version",
            "score": st.column_config.NumberColumn(format="%.4f"),
            "label": "predicted",
            "scored_at": ui.time_column("scored at"),
            "verdict": st.column_config.TextColumn("right?", help="judged only if made before the label was known"),
        },
    )
    if len(labels) > 1:
        st.caption(f"{len(labels)} labels were received for it; the latest counts.")
        st.dataframe(
            labels,
            hide_index=True,
            column_config={"labelled_at": ui.time_column("labelled at"), "received_at": ui.time_column("received at")},
        )


def position(history: pd.DataFrame) -> None:
    latest = history.iloc[-1]
    version, score = str(latest["model_version"]), float(latest["score"])
    st.subheader("Where its score sits")
    rank = ask(queries.score_rank, version, score)
    if rank is not None:
        st.markdown(f"Its score {score:.4f} is higher than **{rank:.1%}** of the predictions {ui.text(version)} made.")
    histogram = ask(queries.score_histogram, queries.PredictionFilter(model_versions=(version,), history=True))
    options = ask(queries.prediction_options)
    chart = charts.score_histogram(
        histogram.bins,
        labels=options.labels,
        positive=options.positive_label,
        marker=score,
        thresholds=histogram.thresholds,
    )
    st.altair_chart(chart, width="stretch")


def numeric_features(stored: dict[str, Any] | None) -> set[str]:
    """The record's features stored as numbers (the layout stores numeric features as floats)."""
    if stored is None:
        return set()
    return {n for n, v in stored.items() if n not in queries.RECORD_METADATA and isinstance(v, float | int)}


def features(stored: dict[str, Any]) -> None:
    st.subheader("Its features, as ingested")
    names = [name for name in stored if name not in queries.RECORD_METADATA]
    values = pd.DataFrame({"feature": names, "value": [ui.plain(stored[n]) for n in names]})
    st.dataframe(values, hide_index=True, height=35 * (len(values) + 1) + 3)  # every feature, no scrolling
    st.caption(
        f"From {ui.code(stored['source_file'])} row {stored['row_number']}, ingested {ui.when(stored['ingested_at'])}."
    )


def refused(rows: pd.DataFrame) -> None:
    st.subheader("Refused rows with this id")
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={"quarantined_at": ui.time_column("refused at"), "reason": ui.long_text_column("reason")},
    )
    ui.full_text(rows, "reason", refused_where, "Each reason")


def refused_where(row: pd.Series) -> str:
    """Where a refused row was: its file and row, or the file when it was refused whole."""
    number = row["row_number"]
    return f"{ui.code(row['source_file'])} " + ("(the whole file)" if pd.isna(number) else f"row {int(number)}")


def render() -> None:
    st.title("Record")
    record_id = chosen_id()
    if not record_id:
        st.info("Type a record's id: what was predicted for it, by which model, and was it right.")
        recently_scored()
        return
    stored = ask(queries.record, record_id)
    quarantined = ask(queries.record_quarantine, record_id)
    if stored is None and quarantined.empty:
        st.warning(f"No record with id {ui.code(record_id)} (ids are matched exactly).")
        recently_scored()
        return
    history = ask(queries.record_predictions, record_id)
    labels = ask(queries.record_labels, record_id)
    if stored is None:
        st.warning(f"{ui.code(record_id)} was never stored: every row with this id was refused.")
    elif history.empty:
        st.info("Stored but not scored yet: `uv run scorehouse cycle` scores every record the champion has not scored.")
    else:
        verdict(history, labels)
        predictions(history, labels)
        explanations.record(record_id, numeric_features(stored))
        position(history)
    if stored is not None:
        features(stored)
    if not quarantined.empty:
        refused(quarantined)


render()
