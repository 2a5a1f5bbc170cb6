"""The dashboard's charts (Altair), built from the small frames `warehouse.queries` returns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import altair as alt
import pandas as pd

ALERT_COLOUR = "#d62728"
BASELINE_COLOUR = "#7f7f7f"
SERIES_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
THRESHOLD = "alert threshold"  # the reference series drawn red


# Colours by class role, whatever the dataset calls its classes: the negative class light, the positive dark.
NEGATIVE_COLOUR = "#9ecae9"
POSITIVE_COLOUR = "#1f5f99"


def class_colours(labels: Sequence[str], positive: str | None) -> alt.Scale:
    """Each label's colour by its role: `positive` (the label of scores at or above the threshold) dark, the
    other light."""
    return alt.Scale(
        domain=list(labels), range=[POSITIVE_COLOUR if label == positive else NEGATIVE_COLOUR for label in labels]
    )


def score_histogram(
    bins: pd.DataFrame,
    *,
    labels: Sequence[str],
    positive: str | None,
    marker: float | None = None,
    thresholds: Sequence[float] = (),
) -> alt.Chart | alt.LayerChart:
    """Predictions per score bin, stacked by predicted label, coloured by class role (`labels`: every label
    the warehouse holds, negative first; `positive`: the positive one); `marker` draws one score as a black
    line, `thresholds` the decision thresholds as dashed red lines."""
    bars = (
        alt.Chart(bins)
        .mark_bar()
        .encode(
            x=alt.X("bin_start:Q", bin=alt.Bin(binned=True), title="score", scale=alt.Scale(domain=[0, 1])),
            x2="bin_end:Q",
            y=alt.Y("rows:Q", stack=True, title="predictions"),
            color=alt.Color("label:N", title="predicted label", scale=class_colours(labels, positive)),
            tooltip=[
                alt.Tooltip("bin_start:Q", title="from", format=".2f"),
                alt.Tooltip("bin_end:Q", title="to", format=".2f"),
                alt.Tooltip("label:N", title="predicted"),
                alt.Tooltip("rows:Q", title="predictions", format=","),
            ],
        )
    )
    layers: list[alt.Chart] = [bars]
    if thresholds:
        layers.append(
            alt.Chart(pd.DataFrame({"threshold": list(thresholds)}))
            .mark_rule(color=ALERT_COLOUR, strokeDash=[6, 4], strokeWidth=2)
            .encode(x="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", title="decision threshold", format=".2f")])
        )
    if marker is not None:
        layers.append(
            alt.Chart(pd.DataFrame({"score": [marker]}))
            .mark_rule(color="black", strokeWidth=2)
            .encode(x="score:Q", tooltip=[alt.Tooltip("score:Q", title="this record", format=".4f")])
        )
    return bars if len(layers) == 1 else alt.LayerChart(layer=layers)


def _colours(values: pd.DataFrame, reference: pd.DataFrame) -> alt.Scale:
    """Measured series in the category palette; thresholds red and baselines grey, whatever their order."""
    measured = list(dict.fromkeys(values["series"]))
    drawn = list(dict.fromkeys(reference["series"]))
    return alt.Scale(
        domain=measured + drawn,
        range=SERIES_COLOURS[: len(measured)] + [ALERT_COLOUR if s == THRESHOLD else BASELINE_COLOUR for s in drawn],
    )


def over_time(
    values: pd.DataFrame,
    *,
    y_title: str,
    reference: pd.DataFrame | None = None,
    y_domain: tuple[float, float] | None = None,
) -> alt.LayerChart:
    """Lines over time, one per `series` (columns when, series, value, status, detail), points in alert
    drawn red. `reference` (columns when, series, value) holds the alert `THRESHOLD` and baselines,
    drawn dashed."""
    reference = reference if reference is not None else pd.DataFrame(columns=["when", "series", "value"])
    x = alt.X("when:T", title="end of the monitored window", axis=alt.Axis(format="%b %d", tickCount="day"))
    y = alt.Y("value:Q", title=y_title, scale=alt.Scale(domain=y_domain) if y_domain else alt.Scale(zero=False))
    colour = alt.Color(
        "series:N",
        title=None,
        scale=_colours(values, reference),
        legend=alt.Legend(orient="bottom", columns=1, labelLimit=300),
    )
    tooltip = [
        alt.Tooltip("when:T", title="window end", format="%Y-%m-%d %H:%M"),
        alt.Tooltip("series:N"),
        alt.Tooltip("value:Q", format=".3f"),
        alt.Tooltip("status:N"),
        alt.Tooltip("detail:N"),
    ]
    lines = alt.Chart(values).mark_line(point=True).encode(x=x, y=y, color=colour, tooltip=tooltip)
    alerts = (
        alt.Chart(values)
        .transform_filter(alt.datum.status == "alert")
        .mark_point(size=140, filled=True, opacity=1)
        .encode(x=x, y=y, color=alt.value(ALERT_COLOUR), tooltip=tooltip)
    )
    dashed = (
        alt.Chart(reference)
        .mark_line(strokeDash=[6, 4], interpolate="step-after", point=alt.OverlayMarkDef(shape="diamond", size=40))
        .encode(x=x, y=y, color=colour, tooltip=[alt.Tooltip("series:N"), alt.Tooltip("value:Q", format=".3f")])
    )
    return alt.LayerChart(layer=[dashed, lines, alerts])


CHAMPION_NOW_COLOUR = "#2ca02c"


def champion_timeline(periods: pd.DataFrame) -> alt.Chart:
    """One bar per champion period (columns model_version, champion_from, champion_until; an empty
    `champion_until` is the champion now). The champion now is green, earlier ones grey: a colour says
    the role, never a version's rank in a palette (where a third version came out red)."""
    now = periods["champion_until"].isna()
    frame = periods.assign(
        champion_until=periods["champion_until"].fillna(pd.Timestamp(datetime.now(UTC))),
        role=now.map({True: "champion now", False: "earlier champion"}),
    )
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("champion_from:T", title="champion from … until"),
            x2="champion_until:T",
            y=alt.Y("model_version:N", title="version", sort=None),
            color=alt.Color(
                "role:N",
                title=None,
                scale=alt.Scale(
                    domain=["champion now", "earlier champion"], range=[CHAMPION_NOW_COLOUR, BASELINE_COLOUR]
                ),
            ),
            tooltip=["model_version:N", "champion_from:T", "champion_until:T", "reason:N"],
        )
    )


# Features (of any dataset) as series: the category palette without its red and grey, which mean an alert and
# a baseline on every page; whatever is beyond them is drawn together in grey.
FEATURE_COLOURS = [*SERIES_COLOURS, "#e377c2", "#bcbd22", "#17becf"]
OTHER_FEATURES = "other features"


def feature_colours(features: Sequence[str]) -> alt.Scale:
    """Each feature its colour in the order given (at most `len(FEATURE_COLOURS)`), `OTHER_FEATURES` grey."""
    named = [f for f in features if f != OTHER_FEATURES]
    extra = [OTHER_FEATURES] if OTHER_FEATURES in features else []
    return alt.Scale(domain=named + extra, range=FEATURE_COLOURS[: len(named)] + [BASELINE_COLOUR] * len(extra))


def shares_over_time(shares: pd.DataFrame, features: Sequence[str]) -> alt.Chart:
    """One line per feature (columns when, feature, share, explained, detail): the share of a report's explained
    predictions whose top reason it was, in the order and colours of `features`."""
    x = alt.X("when:T", title="end of the monitored window", axis=alt.Axis(format="%b %d", tickCount="day"))
    return (
        alt.Chart(shares)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("share:Q", title="share of explained predictions", axis=alt.Axis(format="%")),
            color=alt.Color(
                "feature:N",
                title="top reason",
                scale=feature_colours(features),
                sort=list(features),
                legend=alt.Legend(orient="bottom", columns=3, labelLimit=300),
            ),
            tooltip=[
                alt.Tooltip("when:T", title="window end", format="%Y-%m-%d %H:%M"),
                alt.Tooltip("feature:N", title="top reason"),
                alt.Tooltip("share:Q", format=".1%"),
                alt.Tooltip("explained:Q", title="explained predictions", format=","),
                alt.Tooltip("detail:N"),
            ],
        )
    )


MORE_IMPORTANT = "more than in the reference"
LESS_IMPORTANT = "less than in the reference"


def contribution_drift_bars(drift: pd.DataFrame) -> alt.Chart:
    """One bar per feature (columns feature, change, detail): the window's mean |contribution| minus the reference
    set's, in log-odds; right of zero the feature weighs more in the scores than it did in the reference."""
    frame = drift.assign(direction=[MORE_IMPORTANT if c > 0 else LESS_IMPORTANT for c in drift["change"]])
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("change:Q", title="change of mean |contribution| (log-odds)"),
            y=alt.Y("feature:N", sort="-x", title=None),
            color=alt.Color(
                "direction:N",
                title="importance in the window",
                scale=alt.Scale(domain=[MORE_IMPORTANT, LESS_IMPORTANT], range=[SERIES_COLOURS[1], SERIES_COLOURS[0]]),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("feature:N"),
                alt.Tooltip("change:Q", format="+.4f"),
                alt.Tooltip("detail:N"),
            ],
        )
    )
