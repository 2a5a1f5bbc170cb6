"""Why a score: the stored explanations, shown on the Record, Models and Predictions pages.

Everything is read from the warehouse (`warehouse.queries`): the base value, the reason codes and each
version's global importance were written by the flows; nothing here touches a model. Contributions are
in log-odds (margin) units: base value + contributions = the logit of the score.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import ui
from dashboard.data import ask
from pipeline.config import ConfigError, load_settings
from warehouse import queries

NOT_EXPLAINED = (
    "This prediction was stored without an explanation (scored before explanations were stored, or with "
    "`[explain] enabled = false`). The next champion that scores it stores one."
)


# ------------------------------------------------------------------------------------------- words


def feature_words() -> dict[str, tuple[str, str]]:
    """Each feature's words and unit from the config (`label`, `unit`); empty when there is no config."""
    try:
        features = load_settings().dataset.features
    except (ConfigError, OSError):
        return {}
    return {f.name: (f.label or f.name.replace("_", " "), f.unit or "") for f in features}


def reason_in_words(feature: str, value: str | None, rank: int, words: Mapping[str, tuple[str, str]]) -> str:
    """A reason code as a sentence: "interest rate 24.1 % raised the risk most" (rank 0 is the first)."""
    label, unit = words.get(feature, (feature.replace("_", " "), ""))
    shown = "missing" if value is None else f"{value} {unit}".strip()
    effect = "raised the risk most" if rank == 0 else "raised the risk"
    return f"{label} {shown} {effect}"


# --------------------------------------------------------------------------------------- waterfall


def waterfall_steps(base_value: float, score: float, reasons: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The steps from the base value to the score's log-odds: one per reason code, then every other
    feature together (what is left of the margin), each with where it starts and ends."""
    margin = math.log(score / (1 - score)) if 0 < score < 1 else math.copysign(math.inf, score - 0.5)
    steps = [("base value", 0.0, base_value)]
    level = base_value
    for reason in reasons:
        steps.append((str(reason["feature"]), level, level + float(reason["contribution"])))
        level += float(reason["contribution"])
    if math.isfinite(margin):
        steps.append(("other features", level, margin))
        steps.append(("score (log-odds)", 0.0, margin))
    frame = pd.DataFrame(steps, columns=["step", "start", "end"])
    frame["order"] = range(len(frame))
    frame["effect"] = [
        "total" if i in (0, len(frame) - 1) else ("raised" if end >= start else "lowered")
        for i, (start, end) in enumerate(zip(frame["start"], frame["end"], strict=True))
    ]
    return frame


def waterfall_chart(steps: pd.DataFrame) -> alt.Chart:
    colours = alt.Scale(domain=["total", "raised", "lowered"], range=["#8c8c8c", "#d62728", "#2ca02c"])
    return (
        alt.Chart(steps)
        .mark_bar()
        .encode(
            x=alt.X("step:N", sort=alt.SortField("order"), title=None),
            y=alt.Y("start:Q", title="log-odds of the positive class"),
            y2="end:Q",
            color=alt.Color("effect:N", scale=colours, title=None),
            tooltip=["step", alt.Tooltip("start:Q", format=".3f"), alt.Tooltip("end:Q", format=".3f")],
        )
    )


# ------------------------------------------------------------------------------------------- pages


def record(record_id: str, numeric: Collection[str] = ()) -> None:
    """The Record page's "Why this score": the waterfall and the reason codes in words. The values of the
    `numeric` features are written as numbers are (`10000`, not `10000.0`)."""
    st.subheader("Why this score")
    stored = ask(queries.record_explanation, record_id)
    if stored is None:
        return
    if stored["base_value"] is None or pd.isna(stored["base_value"]):
        st.info(NOT_EXPLAINED)
        return
    reasons = list(stored["reasons"])
    words = feature_words()
    if reasons:
        sentences = [
            reason_in_words(
                r["feature"], ui.plain_number(r["value"]) if r["feature"] in numeric else r["value"], rank, words
            )
            for rank, r in enumerate(reasons)
        ]
        st.markdown("\n".join(f"{rank + 1}. {ui.text(s)}" for rank, s in enumerate(sentences)))
    else:
        st.markdown("No feature raised this record's risk above the average record's.")
    st.altair_chart(waterfall_chart(waterfall_steps(stored["base_value"], stored["score"], reasons)), width="stretch")
    st.caption(
        f"By {ui.text(stored['model_version'])}: from the base value {stored['base_value']:.3f} (the average "
        f"record) to the score {stored['score']:.4f}, in log-odds. Each reason is a feature's TreeSHAP contribution; "
        "the rest of the features together make up the remaining step."
    )


def importance() -> None:
    """The Models page's global importance of each version and its change since the version before."""
    table = ask(queries.global_importance)
    st.subheader("What drives each version's scores")
    if table.empty:
        st.info("No version has stored contributions yet: versions trained from now on store them.")
        return
    st.caption(
        "Global importance: the mean |contribution| (log-odds) of each feature over the version's reference set; "
        "change: since the version trained before it."
    )
    latest = table[table["model_version"] == table["model_version"].iloc[-1]].nlargest(10, "importance")
    st.altair_chart(
        alt.Chart(latest)
        .mark_bar()
        .encode(x=alt.X("importance:Q", title="mean |contribution|"), y=alt.Y("feature:N", sort="-x", title=None)),
        width="stretch",
    )
    wide = table.pivot(index="feature", columns="model_version", values="importance")
    st.dataframe(wide.sort_values(wide.columns[-1], ascending=False), width="stretch")
    changes = table.dropna(subset=["change"])
    if not changes.empty:
        st.dataframe(
            changes.assign(size=changes["change"].abs()).nlargest(10, "size").drop(columns="size"),
            hide_index=True,
            width="stretch",
            column_config={"model_version": "version", "change": st.column_config.NumberColumn(format="%+.4f")},
        )


def top_reason_filter(where: queries.PredictionFilter) -> queries.PredictionFilter:
    """The Predictions page's filter by top reason (the feature that raised the score most)."""
    names = ask(queries.feature_names)
    if not names:
        return where
    chosen = st.selectbox("Top reason", ["any", *names], key="predictions.top_reason")
    return where if chosen == "any" else replace(where, top_reason=chosen)
