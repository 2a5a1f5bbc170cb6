"""Predictions: each record's current prediction (or, one switch away, every prediction ever made), filtered,
counted and paged inside DuckDB, with a score histogram marking the threshold, the realised quality of the
labelled rows of the filter, and a bounded CSV download of the filtered rows."""

from __future__ import annotations

import math
from urllib.parse import quote

import pandas as pd
import streamlit as st

from dashboard import charts, data, explanations, ui
from dashboard.data import ask
from warehouse import queries

TRUE_LABEL = {"any": None, "known": True, "not yet": False}


def filters(options: queries.PredictionOptions) -> queries.PredictionFilter:
    top = st.columns([2, 1, 1])
    picked = top[0].date_input(
        "Scored between (UTC days)",
        value=(options.first_day, options.last_day),
        min_value=options.first_day,
        max_value=options.last_day,
        key="predictions.days",
    )
    versions = top[1].multiselect(
        "Model version", options.model_versions, placeholder="all", key="predictions.versions"
    )
    labels = top[2].multiselect("Predicted label", options.labels, placeholder="all", key="predictions.labels")
    bottom = st.columns([2, 1, 1])
    low, high = bottom[0].slider("Score", 0.0, 1.0, (0.0, 1.0), step=0.01, key="predictions.score")
    known = bottom[1].radio("True label", list(TRUE_LABEL), horizontal=True, key="predictions.labelled")
    record_id = bottom[2].text_input("Record id starts with", key="predictions.id_prefix", placeholder="any id")
    history = st.toggle(
        "Every prediction ever made (history)",
        key="predictions.history",
        help="Off: one row per record, its current prediction. On: every version's prediction of every record.",
    )
    scored_from, scored_to = ui.day_range(picked)
    return queries.PredictionFilter(
        scored_from=scored_from,
        scored_to=scored_to,
        model_versions=tuple(versions),
        labels=tuple(labels),
        score_min=low,
        score_max=high,
        labelled=TRUE_LABEL[known],
        record_id=record_id,
        history=history,
    )


def counted(where: queries.PredictionFilter) -> str:
    """What one row is: a record's current prediction, or one prediction of the history."""
    return "predictions" if where.history else "records"


def counts(histogram: queries.ScoreHistogram, where: queries.PredictionFilter) -> None:
    columns = st.columns(2 + len(histogram.by_label))
    columns[0].metric(f"Matching {counted(where)}", ui.count(histogram.rows))
    for column, (label, rows) in zip(columns[1:], histogram.by_label.items(), strict=False):
        column.metric(f"Predicted {ui.text(label)} ({rows / histogram.rows:.1%})", ui.count(rows))
    columns[-1].metric("Mean score", ui.decimal(histogram.mean_score))
    st.caption(
        "Every prediction of every version, one row per prediction (a re-scored record counts once per version)."
        if where.history
        else "One row per record: its current prediction, by the version that scored it last. "
        "Switch on the history to see every prediction ever made."
    )


def histogram_chart(histogram: queries.ScoreHistogram, options: queries.PredictionOptions) -> None:
    shown = ", ".join(f"{t:.2f}" for t in histogram.thresholds)
    st.altair_chart(
        charts.score_histogram(
            histogram.bins, labels=options.labels, positive=options.positive_label, thresholds=histogram.thresholds
        ),
        width="stretch",
    )
    if shown:
        st.caption(
            f"Dashed red: the decision threshold ({shown}); a score at or above it is predicted "
            f"{ui.text(options.positive_label or 'positive')}."
        )


def labelled(where: queries.PredictionFilter, options: queries.PredictionOptions) -> None:
    """The confusion matrix and realised quality of the filtered rows whose label arrived."""
    st.subheader("How the labelled ones did")
    quality = ask(queries.labelled_quality, where, options.positive_label)
    after = (
        f" {ui.count(quality.made_after_label)} labelled {counted(where)} were predicted after their label was "
        "known (a re-scoring by a later version, which may have trained on it) and are not judged."
        if quality.made_after_label
        else ""
    )
    if quality.judged == 0:
        st.info(f"None of the matching {counted(where)} has a label from before it was predicted yet.{after}")
        return
    rates = quality.rates()
    cells = [
        ("ROC AUC", quality.roc_auc),
        ("Accuracy", rates["accuracy"]),
        (f"Precision ({ui.text(options.positive_label or 'positive')})", rates["precision"]),
        (f"Recall ({ui.text(options.positive_label or 'positive')})", rates["recall"]),
        ("Balanced accuracy", rates["balanced_accuracy"]),
    ]
    for column, (name, value) in zip(st.columns(len(cells)), cells, strict=True):
        column.metric(name, ui.decimal(value))
    matrix = quality.matrix.pivot_table(
        index="actual", columns="predicted", values="rows", aggfunc="sum", fill_value=0
    ).reindex(index=list(options.labels), columns=list(options.labels), fill_value=0)
    matrix.index = [f"true {label}" for label in matrix.index]
    matrix.columns = [f"predicted {label}" for label in matrix.columns]
    st.dataframe(matrix, width="content")
    st.caption(
        f"On the {ui.count(quality.judged)} matching {counted(where)} whose label arrived after they were "
        f"predicted (the latest label of each record counts).{after}"
    )


def with_record_links(rows: pd.DataFrame) -> pd.DataFrame:
    """The record id as a link to its page (the link column shows the id itself)."""
    return rows.assign(record_id=[f"record?record_id={quote(str(r))}" for r in rows["record_id"]])


def table(where: queries.PredictionFilter, matching: int, page_rows: int) -> None:
    pages = max(1, math.ceil(matching / page_rows))
    if st.session_state.get("predictions.page", 1) > pages:
        st.session_state["predictions.page"] = 1  # the filters changed and the page is gone
    left, right = st.columns([1, 5])
    page = int(left.number_input("Page", min_value=1, max_value=pages, step=1, key="predictions.page"))
    right.caption(f"Page {page:,} of {pages:,}, {page_rows} rows each, newest first. Click an id to open its record.")
    rows = ask(queries.prediction_page, where, limit=page_rows, offset=(page - 1) * page_rows)
    st.dataframe(
        with_record_links(rows),
        hide_index=True,
        width="stretch",
        column_config={
            "record_id": st.column_config.LinkColumn("record", display_text=r"record\?record_id=(.*)"),
            "score": st.column_config.NumberColumn(format="%.4f"),
            "predicted_label": "predicted",
            "true_label": "true label",
            "scored_at": ui.time_column("scored at"),
            "labelled_at": ui.time_column("labelled at"),
            "verdict": st.column_config.TextColumn("right?", help="judged only if made before the label was known"),
        },
    )


def download(where: queries.PredictionFilter, matching: int, export_rows: int) -> None:
    noun = counted(where)
    st.download_button(
        "Download the filtered rows as CSV",
        data=data.export_csv(where, export_rows),
        file_name="predictions.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
    )
    if matching > export_rows:
        st.caption(
            f"{ui.count(matching)} {noun} match, the file holds the newest {ui.count(export_rows)} "
            "(the download is capped). Narrow the filters to get the others."
        )
    else:
        st.caption(f"The file holds all {ui.count(matching)} matching {noun}.")


def render() -> None:
    st.title("Predictions")
    options = ask(queries.prediction_options)
    if options.first_day is None:
        st.info(ui.NO_PREDICTIONS)
        return
    where = explanations.top_reason_filter(filters(options))
    histogram = ask(queries.score_histogram, where)
    counts(histogram, where)
    if histogram.rows == 0:
        st.info("No prediction matches these filters.")
        return
    histogram_chart(histogram, options)
    labelled(where, options)
    settings = data.settings()
    table(where, histogram.rows, settings.page_rows)
    download(where, histogram.rows, settings.export_rows)


render()
