"""The Explanations page with Streamlit's AppTest, over warehouses the real flows wrote (train, ingest, score,
monitor in this process): what the page shows must be the stored `monitoring` rows, feature by feature and
report by report, and when no report has explanation metrics it must say why and what to run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from dashboard import charts
from flows.ingest import ingest
from flows.monitor import monitor
from flows.score import score
from flows.train import train
from tests.flows.conftest import Project, arrivals
from tests.reliability._projects import quick_project
from warehouse.catalog import build_catalog, catalog_path

OpenApp = Callable[[Path], AppTest]
PAGE = "app_pages/explanations.py"
NO_RETRAINING = {"every_new_labels": 1_000_000, "on_drift": False, "on_quality_drop": False}
DAYS = ((4000, 300), (4300, 300))  # two days of arrivals (first row in the sample, rows): two reports


def monitored_project(folder: Path, **sections: dict[str, Any]) -> Project:
    """A project through the real flows: the first model, then two days of arrivals, each scored and monitored."""
    project = quick_project(folder, chunk_rows=500, retrain=NO_RETRAINING, **sections)
    train(project.config)
    for day, (start, rows) in enumerate(DAYS, start=1):
        project.drop_csv(arrivals(rows, start=start), f"day-{day}.csv")
        ingest(project.config)
        score(project.config)
        monitor(project.config)
    return project


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Project:
    return monitored_project(tmp_path_factory.mktemp("explained") / "project")


def catalog(project: Project) -> Path:
    return catalog_path(project.store())


def open_page(open_app: OpenApp, project: Project) -> AppTest:
    at = open_app(catalog(project)).run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def text(at: AppTest) -> str:
    """Everything the page wrote: markdown, captions and notices."""
    elements = [*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.success, *at.title, *at.subheader]
    return "\n".join(str(e.value) for e in elements)


def chart_data(at: AppTest, index: int) -> pd.DataFrame:
    """The rows a chart of the page draws (every dataset of its spec, together)."""
    chart = at.get("vega_lite_chart")[index].proto
    frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.datasets]
    if chart.data.data:
        frames.append(convert_arrow_bytes_to_pandas_df(chart.data.data))
    return pd.concat(frames, ignore_index=True)


def chart_spec(at: AppTest, index: int) -> dict[str, Any]:
    return dict(json.loads(at.get("vega_lite_chart")[index].proto.spec))


def utc(value: object) -> pd.Timestamp:
    """A time as a chart's data holds it (naive UTC or aware) as an aware UTC timestamp."""
    when = pd.Timestamp(value)  # type: ignore[arg-type]
    return when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")


def rows(project: Project, metric: str) -> pd.DataFrame:
    """The stored monitoring rows of one explanation metric, oldest report first."""
    return project.query(
        "SELECT report_id, window_end, model_version, column_name, value, threshold, status, sample_size, detail "
        "FROM monitoring WHERE metric = ? ORDER BY window_end, column_name",
        [metric],
    )


# ------------------------------------------------------------------------------------------ the page


def test_the_page_is_in_the_navigation_and_reads_the_latest_report_in_words(
    open_app: OpenApp, explained: Project
) -> None:
    at = open_page(open_app, explained)
    drift = rows(explained, "explanation_drift")
    assert len(drift) == len(DAYS)  # one report per day, each with its explanation drift
    latest = drift.iloc[-1]
    explained_rows = int(latest["sample_size"])
    reference_rows = explained.scalar(
        "SELECT count(*) FROM reference WHERE model_version = 'v1' AND contributions IS NOT NULL"
    )
    shown = text(at)
    assert "Explanations" in shown and not at.exception
    assert f"{explained_rows:,} predictions of the {explained_rows:,} in the window carried an explanation" in shown
    assert f"Explanation drift **{latest['value']:.3f}**: {latest['value']:.1%} of the importance moved" in shown
    assert f"v1's reference set ({reference_rows:,} rows with contributions)" in shown
    assert "in log-odds of the positive class" in shown

    shares = rows(explained, "top_reason_share")
    newest = shares[shares["window_end"] == latest["window_end"]].sort_values(
        ["value", "column_name"], ascending=[False, True]
    )
    first = newest.iloc[0]
    assert f"Top reason, as a share of the {explained_rows:,} explained predictions: **" in shown
    assert f"{first['column_name'].replace('_', chr(92) + '_')}** ({first['value']:.1%})" in shown
    others = int((newest["value"] > 0).sum()) - 5
    assert (f"and {others} more feature(s) (below)" in shown) == (others > 0)

    changes = rows(explained, "contribution_drift")
    changes = changes[changes["window_end"] == latest["window_end"]]
    largest = changes.loc[changes["value"].abs().idxmax()]
    assert f"{largest['column_name'].replace('_', chr(92) + '_')}**, {largest['value']:+.4f} log-odds" in shown


def test_the_share_of_each_top_reason_over_time_is_the_stored_shares(open_app: OpenApp, explained: Project) -> None:
    at = open_page(open_app, explained)
    stored = rows(explained, "top_reason_share")
    features = explained.settings.dataset.feature_names
    assert sorted(set(stored["column_name"])) == sorted(features)

    drawn = chart_data(at, 0)
    assert set(drawn["feature"]) <= {*features, charts.OTHER_FEATURES}
    named = drawn[drawn["feature"] != charts.OTHER_FEATURES]
    assert 0 < named["feature"].nunique() <= len(charts.FEATURE_COLOURS)
    # every line point drawn is a stored share; the rest of the features make up "other features"
    expected = stored.set_index(["window_end", "column_name"])["value"]
    for when, feature, share in named[["when", "feature", "share"]].itertuples(index=False):
        assert share == pytest.approx(expected.loc[(utc(when), feature)])
    totals = drawn.groupby("when")["share"].sum().sort_index().to_numpy()
    assert totals == pytest.approx(stored.groupby("window_end")["value"].sum().sort_index().to_numpy())
    colours = chart_spec(at, 0)["encoding"]["color"]["scale"]
    assert charts.ALERT_COLOUR not in colours["range"]  # red means an alert on every page

    table = next(d.value for d in at.dataframe if "explained" in d.value.columns and features[0] in d.value.columns)
    assert len(table) == len(DAYS)
    assert table[features].to_numpy() == pytest.approx(
        stored.pivot(index="window_end", columns="column_name", values="value")[features].to_numpy()
    )


def test_contribution_drift_per_feature_for_a_chosen_report_and_its_trend(
    open_app: OpenApp, explained: Project
) -> None:
    at = open_page(open_app, explained)
    stored = rows(explained, "contribution_drift")
    first, latest = sorted(set(stored["report_id"]), key=lambda r: stored[stored.report_id == r]["window_end"].iloc[0])
    picker = at.selectbox(key="explanations.report")
    assert picker.value == latest  # the newest report first

    for report in (latest, first):
        at.selectbox(key="explanations.report").set_value(report).run()
        bars = chart_data(at, 1)
        mine = stored[stored["report_id"] == report].set_index("column_name")
        assert sorted(bars["feature"]) == sorted(mine.index)
        assert bars.set_index("feature")["change"].to_dict() == pytest.approx(mine["value"].to_dict())
        sign = {True: charts.MORE_IMPORTANT, False: charts.LESS_IMPORTANT}
        assert all(d == sign[c > 0] for c, d in zip(bars["change"], bars["direction"], strict=True))
        explained_rows = int(mine["sample_size"].iloc[0])
        assert f"over the {explained_rows:,} explained predictions of the window" in text(at)

    # the feature picker starts with the largest change of the chosen report, then any feature's trend
    mine = stored[stored["report_id"] == first]
    assert at.selectbox(key="explanations.feature").value == mine.loc[mine["value"].abs().idxmax(), "column_name"]
    feature = sorted(mine["column_name"])[0]
    at.selectbox(key="explanations.feature").set_value(feature).run()
    trend = chart_data(at, 2)
    line = trend[trend["series"] == f"{feature}: contribution drift"].sort_values("when")
    assert line["value"].tolist() == pytest.approx(stored[stored["column_name"] == feature]["value"].tolist())
    assert (trend[trend["series"] == "the reference set (no change)"]["value"] == 0).all()
    grew = int((stored[stored["column_name"] == feature]["value"] > 0).sum())
    assert f"weighed more than in the reference in {grew} of {len(DAYS)} report(s)" in text(at)


def test_explanation_drift_over_time_with_its_status_and_sample_sizes(open_app: OpenApp, explained: Project) -> None:
    at = open_page(open_app, explained)
    stored = rows(explained, "explanation_drift")
    drawn = chart_data(at, 3)
    line = drawn[drawn["series"] == "explanation drift"].sort_values("when")
    assert line["value"].tolist() == pytest.approx(stored["value"].tolist())
    assert line["status"].tolist() == stored["status"].tolist() == ["info"] * len(DAYS)
    assert charts.THRESHOLD not in set(drawn["series"])  # the rows carry no bar, so none is drawn
    low, high = chart_spec(at, 3)["layer"][1]["encoding"]["y"]["scale"]["domain"]
    assert low == 0 and max(stored["value"]) < high <= 1  # from nothing moved to just above the largest
    shown = text(at)
    assert f"Status of all {len(DAYS)} report(s): info. These rows carry no bar" in shown
    table = next(d.value for d in at.dataframe if "reference_explained" in d.value.columns)
    assert table["explained"].tolist() == stored["sample_size"].tolist()
    assert table["explanation_drift"].tolist() == pytest.approx(stored["value"].tolist())


# --------------------------------------------------------------------------------------- empty states


def test_without_reports_the_page_says_what_to_run(open_app: OpenApp, tmp_path: Path, prefect_harness: None) -> None:
    project = quick_project(tmp_path / "project", chunk_rows=500, retrain=NO_RETRAINING)
    train(project.config)
    at = open_page(open_app, project)
    assert "No monitoring reports yet" in text(at) and "`uv run scorehouse cycle`" in text(at)
    assert not at.get("vega_lite_chart")


def test_with_explanations_switched_off_the_page_says_so_and_what_to_set(
    open_app: OpenApp, tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = monitored_project(tmp_path / "project", explain={"enabled": False})
    assert project.scalar("SELECT count(*) FROM monitoring WHERE metric = 'top_reason_share'") == 0
    monkeypatch.setenv("SCOREHOUSE_CONFIG", project.config)
    at = open_page(open_app, project)
    shown = text(at)
    assert f"None of the {len(DAYS)} monitoring report(s) has explanation metrics" in shown
    assert "explanations are switched off in the config (`[explain] enabled = false`)" in shown
    assert "Set `enabled = true`" in shown and not at.get("vega_lite_chart")

    # Read without that config (a catalog named by SCOREHOUSE_CATALOG alone), the page cannot tell which it was.
    monkeypatch.setenv("SCOREHOUSE_CONFIG", str(tmp_path / "missing.toml"))
    at = open_page(open_app, project)
    assert "were stored without explanations, scored before explanations were stored or with" in text(at)


def test_a_version_trained_before_contributions_were_stored_gets_shares_but_no_drift(
    open_app: OpenApp, tmp_path: Path, prefect_harness: None
) -> None:
    project = quick_project(tmp_path / "project", chunk_rows=500, retrain=NO_RETRAINING)
    train(project.config)
    store = project.store()
    # What a version trained before contributions were stored has: a reference set without them.
    store.delta("reference").update(updates={"contributions": "NULL"})
    build_catalog(store)
    project.drop_csv(arrivals(300), "day-1.csv")
    ingest(project.config)
    score(project.config)
    monitor(project.config)
    assert rows(project, "contribution_drift").empty and rows(project, "top_reason_share")["value"].sum() > 0

    at = open_page(open_app, project)
    shown = text(at)
    assert "v1: its reference set holds no contributions (it was trained before they were stored)" in shown
    assert "`uv run scorehouse retrain --force`" in shown
    assert shown.count("No report measured it. v1: its reference set holds no contributions") == 2
    assert len(at.get("vega_lite_chart")) == 1  # the top reasons over time only
