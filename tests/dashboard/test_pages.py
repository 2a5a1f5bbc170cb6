"""Every page of the dashboard with Streamlit's AppTest, on the tiny warehouse: the numbers shown,
filters that narrow the rows, a record's history, and what each page says when something is missing."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import ui
from dashboard.settings import DashboardSettings
from tests.conftest import repo_config_document, tiny_config_document, write_toml
from tests.dashboard import tiny_warehouse as tw
from tests.dashboard.conftest import APP
from tests.dashboard.tiny_warehouse import Tiny, add_records_and_predictions, empty_warehouse, tiny_warehouse
from warehouse import queries
from warehouse.catalog import build_catalog
from warehouse.layout import FLOW_RUN_ID, RUN_LINKED, VIEWS, open_warehouse
from warehouse.store import Warehouse

OpenApp = Callable[[Path], AppTest]
PAGES = ["overview", "predictions", "record", "monitoring", "models"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return tiny_warehouse(tmp_path_factory.mktemp("tiny"))


def page(open_app: OpenApp, catalog: Path, name: str) -> AppTest:
    at = open_app(catalog).run()
    if name != "overview":
        at.switch_page(f"app_pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    """The first table on the page that has this column."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def text(at: AppTest) -> str:
    """Everything the page wrote: markdown, captions and notices."""
    elements = [*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.success, *at.title, *at.subheader]
    return "\n".join(str(e.value) for e in elements)


# ---------------------------------------------------------------------------------------- overview


def test_overview_shows_totals_champion_last_batch_alert_and_quarantine(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "overview")
    assert metrics(at) == {
        "Records": "6",
        "Predictions": "12",
        "Labels received": "3",
        "Quarantined rows": "2",
        "Model versions": "3",
        "Monitoring reports": "2",
    }
    shown = text(at)
    assert "**v2** in production since 2026-01-03 05:00 UTC" in shown
    assert "Ingested `f2.csv`: **3** records" in shown and "Scored **6** records with **v2**" in shown
    assert "drift\\_share\\_features = 0.750" in shown  # stored names are escaped: `_` could start emphasis
    assert at.dataframe[0].value["column_name"].tolist() == ["amount", "colour"]


# ------------------------------------------------------------------------------------- predictions


def test_predictions_count_records_by_default_and_every_prediction_one_switch_away(
    open_app: OpenApp, tiny: Tiny
) -> None:
    at = page(open_app, tiny.catalog, "predictions")
    rows = table_with(at, "record_id")
    assert metrics(at)["Matching records"] == "6" and len(rows) == 6  # each record's current one
    assert set(rows["model_version"]) == {"v2"}
    assert "One row per record: its current prediction" in text(at)

    at.toggle(key="predictions.history").set_value(True).run()
    assert metrics(at)["Matching predictions"] == "12"  # v1 and v2 of all six
    assert "Every prediction of every version, one row per prediction" in text(at)


def test_predictions_filters_narrow_the_rows(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "predictions")
    at.toggle(key="predictions.history").set_value(True).run()
    at.multiselect(key="predictions.versions").select("v1").run()
    assert metrics(at)["Matching predictions"] == "6"
    at.radio(key="predictions.labelled").set_value("known").run()
    assert metrics(at)["Matching predictions"] == "2"  # a1 and a2 by v1
    table = table_with(at, "record_id")
    assert table["true_label"].tolist() == ["no", "yes"] and table["verdict"].tolist() == ["right", "right"]
    assert table["record_id"].tolist() == ["record?record_id=a1", "record?record_id=a2"]  # links to the record

    at.radio(key="predictions.labelled").set_value("any").run()
    at.text_input(key="predictions.id_prefix").input("b").run()
    assert metrics(at)["Matching predictions"] == "3"
    at.slider(key="predictions.score").set_value((0.3, 1.0)).run()
    assert metrics(at)["Matching predictions"] == "2"  # b2 0.45, b3 0.70
    assert metrics(at)["Predicted no (50.0%)"] == "1"
    assert not at.exception


def test_predictions_judge_only_what_was_predicted_before_the_label(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "predictions")
    at.radio(key="predictions.labelled").set_value("known").run()
    # The current predictions of a1 and a2 are v2's, made on day 3: after both labels were known.
    assert metrics(at)["Matching records"] == "2"
    assert table_with(at, "record_id")["verdict"].tolist() == ["made after the label"] * 2
    assert "None of the matching records has a label from before it was predicted yet." in text(at)
    assert "2 labelled records were predicted after their label was known" in text(at)

    at.toggle(key="predictions.history").set_value(True).run()  # v1's predictions came before the labels
    shown = metrics(at)
    assert (shown["ROC AUC"], shown["Accuracy"], shown["Recall (yes)"]) == ("1.000", "1.000", "1.000")
    matrix = at.dataframe[0].value  # the confusion matrix comes before the rows
    assert matrix.loc["true no", "predicted no"] == 1 and matrix.loc["true yes", "predicted yes"] == 1
    assert matrix.loc["true yes", "predicted no"] == 0
    assert "On the 2 matching predictions whose label arrived after they were predicted" in text(at)


def test_the_histogram_marks_the_threshold_and_colours_by_class_role(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "predictions")
    assert "Dashed red: the decision threshold (0.50); a score at or above it is predicted yes." in text(at)
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    bars, rule = spec["layer"]
    assert bars["encoding"]["color"]["scale"] == {"domain": ["no", "yes"], "range": ["#9ecae9", "#1f5f99"]}
    assert rule["mark"]["type"] == "rule"


def test_class_colours_follow_the_role_not_the_name() -> None:
    from dashboard import charts

    # "bad" sorts first but is the positive class: it gets the positive colour, as "yes" does above.
    scale = charts.class_colours(["good", "bad"], positive="bad").to_dict()
    assert scale == {"domain": ["good", "bad"], "range": [charts.NEGATIVE_COLOUR, charts.POSITIVE_COLOUR]}


def test_predictions_page_through_the_rows_and_say_when_nothing_matches(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "predictions")
    at.toggle(key="predictions.history").set_value(True).run()
    at.date_input(key="predictions.days").set_value((date(2026, 1, 2), date(2026, 1, 2))).run()
    assert metrics(at)["Matching predictions"] == "3"
    at.text_input(key="predictions.id_prefix").input("nobody").run()
    assert "No prediction matches these filters." in text(at)
    assert not at.exception


def test_the_download_says_when_it_is_capped(open_app: OpenApp, tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOREHOUSE_DASHBOARD_EXPORT_ROWS", "5")
    at = page(open_app, tiny.catalog, "predictions")
    assert "6 records match, the file holds the newest 5 (the download is capped)" in text(at)
    assert len(at.get("download_button")) == 1


# ------------------------------------------------------------------------------------------ record


def test_a_record_lookup_shows_its_history_label_and_features(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "record")
    assert [label for label, _, _ in page_links(at)] == ["`a1`", "`a2`", "`a3`"]
    at.text_input(key="record_id").input("a1").run()
    assert not at.exception
    shown = text(at)
    assert "**v2** scored it **0.1500**: predicted **no**" in shown
    # Labelled on day 3 at 05:00; v2 re-scored it at 06:00, after the label: v1's prediction is the one judged.
    assert (
        "True label **no** (labelled 2026-01-03 05:00 UTC): the prediction in force then, **no** by **v1** "
        "(2026-01-01 06:01 UTC), was **right**." in shown
    )
    assert "v2 scored it after the label was known (and may have trained on it): not judged." in shown
    history = at.dataframe[0].value
    assert history["model_version"].tolist() == ["v1", "v2"] and history["score"].tolist() == [0.10, 0.15]
    assert history["verdict"].tolist() == ["right", "made after the label"]
    assert "2 labels were received for it; the latest counts." in shown
    assert "higher than **0.0%** of the predictions v2 made" in shown
    features = at.dataframe[-1].value
    assert dict(zip(features["feature"], features["value"], strict=True)) == {"amount": "10", "colour": "red"}
    assert "batch" not in shown
    assert at.query_params["record_id"] == "a1"  # the address follows the id typed


def test_a_record_from_a_link_without_a_label_yet(open_app: OpenApp, tiny: Tiny) -> None:
    at = open_app(tiny.catalog)
    at.query_params["record_id"] = "b3"
    at.run().switch_page("app_pages/record.py").run()
    shown = text(at)
    assert "**v2** scored it **0.6500**: predicted **yes**" in shown
    assert "No label for this record yet" in shown


def test_an_unknown_and_a_refused_record(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "record")
    at.text_input(key="record_id").input("zz").run()
    assert "No record with id `zz`" in text(at)
    at.text_input(key="record_id").input("b4").run()
    assert "`b4` was never stored: every row with this id was refused." in text(at)
    assert at.dataframe[0].value["rule"].tolist() == ["min"]
    assert not at.exception


# -------------------------------------------------------------------------------------- monitoring


def test_monitoring_shows_trends_alerts_and_reports(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "monitoring")
    shown = text(at)
    assert "Latest report: **v2**" in shown
    assert "Alerts in the latest report: drift, prediction drift. 1 drifted column(s)" in shown
    assert "Open: drift, prediction drift" in shown  # the two episodes the report opened
    # drift share, prediction drift, one column's trend, five quality charts
    assert len(at.get("vega_lite_chart")) == 8
    assert table_with(at, "opened_because")["alert"].tolist() == ["drift", "prediction_drift"]
    alerts = table_with(at, "metric")
    # One notion of alert: the drifted column and the CBPE flag are not alerts.
    assert alerts["alert"].tolist() == ["drift", "prediction drift"]
    assert alerts["metric"].tolist() == ["drift_share_features", "prediction_drift"]
    drifted = table_with(at, "column_name")
    assert drifted["column_name"].tolist() == ["amount"]

    assert at.selectbox(key="monitoring.report").value == "r2"
    at.toggle(key="monitoring.show_report").set_value(True).run()
    assert not at.exception and [b.proto.label for b in at.get("download_button")] == [
        "Download the monitoring rows of this range as CSV",
        "Download the report (HTML)",
    ]
    assert "its count of drifted columns can differ" in text(at)
    at.selectbox(key="monitoring.report").set_value("r1").run()
    assert "r1.html` is gone" in text(at)


def test_one_columns_drift_over_time(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "monitoring")
    at.selectbox(key="monitoring.trend_column").set_value("amount").run()
    assert "1 of 1 reports in the range found amount drifted (significant and material)" in text(at)
    at.selectbox(key="monitoring.trend_column").set_value("colour").run()
    assert "0 of 1 reports in the range found colour drifted" in text(at)


def test_prediction_drift_plots_one_quantity_and_names_each_test(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "monitoring")
    assert "the normed Wasserstein distance (in hold-out standard deviations) at every window size" in text(at)
    points = table_with(at, "verdict")
    assert points["test"].tolist() == ["normed Wasserstein distance, two-sample K-S test"] * 2
    assert points["distance"].tolist() == [0.05, 0.30] and points["p_value"].tolist() == [0.71, 0.001]
    assert points["verdict"].tolist() == ["no drift", "drift"]
    chart = json.loads(at.get("vega_lite_chart")[1].proto.spec)
    assert chart["layer"][1]["encoding"]["y"]["title"] == "distance (hold-out sds)"


# ------------------------------------------------------------------------------------------ models


def test_models_lists_versions_champions_and_decisions(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "models")
    assert "Champion now: **v2**, of 3 version(s) trained." in text(at)
    versions, periods, _, events = (d.value for d in at.dataframe[:4])
    assert versions["status"].tolist() == ["retired", "champion", "rejected"]
    assert periods["model_version"].tolist() == ["v1", "v2"]
    assert "rejected: v3 lost to v2" in events["reason"].tolist()


def test_models_show_the_decision_on_shared_rows_beside_the_own_hold_out(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "models")
    shown = text(at)
    # v3 looks best in the metric columns, but lost to v2 on the rows both were scored on.
    assert (
        "**v3** was rejected on roc\\_auc: 0.770 against v2's 0.790 on the same 200 fresh rows, a gain of -0.020 "
        "(interval -0.060 to +0.020)." in shown
    )
    assert "so they do not compare versions" in shown
    assert "**v2** was champion on roc\\_auc: 0.780 against v1's 0.710" in shown
    versions = at.dataframe[0].value.set_index("model_version")
    assert versions.loc["v3", "against_on_shared_rows"] == 0.79 and versions.loc["v3", "roc_auc"] == 0.85
    decisions = at.dataframe[2].value
    assert decisions[
        ["model_version", "champion", "champion_on_shared_rows", "challenger_on_shared_rows"]
    ].values.tolist() == [
        ["v3", "v2", 0.79, 0.77],
        ["v2", "v1", 0.71, 0.78],
    ]


def test_the_champion_now_is_green_and_earlier_ones_grey(open_app: OpenApp, tiny: Tiny) -> None:
    from dashboard import charts

    at = page(open_app, tiny.catalog, "models")
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert spec["encoding"]["color"]["scale"]["range"] == [charts.CHAMPION_NOW_COLOUR, charts.BASELINE_COLOUR]
    assert charts.ALERT_COLOUR not in spec["encoding"]["color"]["scale"]["range"]


# ------------------------------------------------------------------------------------- explanations


def test_the_record_page_says_why_in_words_with_a_waterfall(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "record")
    at.text_input(key="record_id").input("a3").run()
    shown = text(at)
    assert "Why this score" in shown
    # (escaped as markdown: a stored value is data, never formatting)
    assert "1. amount 30 raised the risk most\n2. colour blue raised the risk" in shown  # stored as "30.0"
    assert "from the base value -1.000 (the average record) to the score 0.8000" in shown
    assert len(at.get("vega_lite_chart")) == 2  # the waterfall and where the score sits
    assert not at.exception

    at.text_input(key="record_id").input("a1").run()  # v2 lowered its risk on every feature
    assert "No feature raised this record's risk above the average record's." in text(at)


def test_a_prediction_stored_without_an_explanation_says_so(open_app: OpenApp, tmp_path: Path) -> None:
    at = open_app(tw.hostile_warehouse(tmp_path))  # scored by v1 only, before explanations
    at.query_params["record_id"] = tw.HOSTILE_ID
    at.run().switch_page("app_pages/record.py").run()
    assert "was stored without an explanation" in text(at) and not at.exception


def test_models_show_each_versions_global_importance_and_its_change(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "models")
    assert "What drives each version's scores" in text(at)
    wide, changes = (d.value for d in at.dataframe[-2:])
    assert wide.round(4).to_dict() == {"v1": {"amount": 0.5, "colour": 0.2}, "v2": {"amount": 0.3, "colour": 0.4}}
    assert sorted(zip(changes["feature"], changes["change"].round(4), strict=True)) == [
        ("amount", -0.2),
        ("colour", 0.2),
    ]


def test_predictions_filter_by_top_reason(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "predictions")
    at.toggle(key="predictions.history").set_value(True).run()
    at.selectbox(key="predictions.top_reason").set_value("amount").run()
    assert metrics(at)["Matching predictions"] == "5"  # v2's, but a1 (nothing raised it); v1 stored none
    at.selectbox(key="predictions.top_reason").set_value("colour").run()
    assert "No prediction matches these filters." in text(at)


# ------------------------------------------------------------------------------------- empty states


@pytest.mark.parametrize("name", PAGES)
def test_before_the_first_run_every_page_says_what_to_run(open_app: OpenApp, tmp_path: Path, name: str) -> None:
    at = page(open_app, tmp_path / "nowhere" / "warehouse.duckdb", name)
    assert "There is no warehouse at" in text(at) and "`make demo`" in text(at)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("overview", "`uv run scorehouse train`"),
        ("predictions", "No predictions yet"),
        ("record", "Type a record's id"),
        ("monitoring", "No monitoring reports yet"),
        ("models", "No model versions yet"),
    ],
)
def test_an_empty_warehouse_says_what_is_missing(open_app: OpenApp, tmp_path: Path, name: str, expected: str) -> None:
    store = empty_warehouse(tmp_path / "warehouse")
    at = page(open_app, store.root / "warehouse.duckdb", name)
    assert expected in text(at)


def test_without_labels_or_reports(open_app: OpenApp, tmp_path: Path) -> None:
    unlabelled = tiny_warehouse(tmp_path, labels=False, reports=False)
    at = page(open_app, unlabelled.catalog, "overview")
    assert "No monitoring reports yet" in text(at)
    at.switch_page("app_pages/record.py").run()
    at.text_input(key="record_id").input("a1").run()
    assert "No label for this record yet" in text(at) and "`uv run scorehouse cycle`" in text(at)
    at.switch_page("app_pages/monitoring.py").run()
    assert "No monitoring reports yet" in text(at)
    assert not at.exception


def test_a_broken_catalog_shows_an_error_not_a_traceback(open_app: OpenApp, tmp_path: Path) -> None:
    catalog = tmp_path / "warehouse.duckdb"
    catalog.write_bytes(b"this is not a DuckDB file")
    at = page(open_app, catalog, "overview")
    assert "The warehouse could not be read" in text(at) and "`uv run scorehouse init`" in text(at)


def test_new_batches_appear_after_a_refresh(open_app: OpenApp, tmp_path: Path) -> None:
    store = empty_warehouse(tmp_path / "warehouse")
    at = page(open_app, store.root / "warehouse.duckdb", "overview")
    assert metrics(at)["Predictions"] == "0"
    add_records_and_predictions(store)
    build_catalog(store)  # as every flow does after its commits
    at.button[0].click().run()  # "Refresh now"; without it the answer is at most ttl_seconds old
    assert metrics(at)["Predictions"] == "12"


# ---------------------------------------------------------------------------------------- settings


def test_the_catalog_comes_from_the_config_unless_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = tiny_config_document()
    document["paths"] = {"warehouse": "elsewhere/wh"}
    monkeypatch.setenv("SCOREHOUSE_CONFIG", str(write_toml(tmp_path / "scorehouse.toml", document)))
    assert DashboardSettings().catalog_path() == tmp_path / "elsewhere" / "wh" / "warehouse.duckdb"
    monkeypatch.setenv("SCOREHOUSE_CATALOG", str(tmp_path / "other.duckdb"))
    assert DashboardSettings().catalog_path() == tmp_path / "other.duckdb"


def test_a_wrong_config_is_shown_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOREHOUSE_CONFIG", str(tmp_path / "missing.toml"))
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    assert "missing.toml does not exist" in at.error[0].value and "SCOREHOUSE_CATALOG" in at.error[0].value


# ------------------------------------------------------------------------------------ hostile values

EVIL, HOSTILE_ID = tw.EVIL, tw.HOSTILE_ID


def _rendered(at: AppTest) -> str:
    """The page's markdown as a CommonMark renderer turns it into HTML (Streamlit's is CommonMark too)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").render(text(at))


def _assert_inert(at: AppTest) -> None:
    html = _rendered(at)
    assert "<a " not in html and "<img" not in html, html
    # Streamlit also links bare URLs (GFM autolinks): outside code spans, a URL must not survive unescaped.
    outside_code = re.sub(r"(`+).+?\1", "", re.sub(r"\\.", "", text(at)))
    assert EVIL not in outside_code, outside_code


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tw.hostile_warehouse(tmp_path_factory.mktemp("hostile"))


def test_a_hostile_record_id_in_the_link_renders_no_link_or_image(open_app: OpenApp, hostile: Path) -> None:
    for record_id in (f"zz`]({EVIL}) [go]({EVIL})", f"![p]({EVIL}/p.png)", HOSTILE_ID):
        at = page(open_app, hostile, "record")
        at.query_params["record_id"] = record_id
        at.switch_page("app_pages/record.py").run()
        assert not at.exception, [e.value for e in at.exception]
        _assert_inert(at)


def test_stored_ids_file_names_and_reasons_render_no_link_or_image(open_app: OpenApp, hostile: Path) -> None:
    at = page(open_app, hostile, "overview")
    _assert_inert(at)
    assert "f](" in text(at)  # the file name is shown, as code
    at = page(open_app, hostile, "record")
    at.text_input(key="record_id").input(HOSTILE_ID).run()
    assert "0.5000" in text(at)  # the record was found and shown
    _assert_inert(at)
    for name in ("models", "predictions"):
        _assert_inert(page(open_app, hostile, name))


def test_the_page_icon_is_served_by_the_dashboard_itself() -> None:
    from dashboard.app import PAGE_ICON

    assert not PAGE_ICON.startswith(":material"), "Streamlit fetches a material page icon from fonts.gstatic.com"


# ------------------------------------------------------------------------- smaller things (issue 14, item 10)


def page_links(at: AppTest) -> list[tuple[str, str, str]]:
    """Each page link on the page: its label, the page it opens and the query it passes."""
    return [(link.proto.label, link.proto.page, link.proto.query_string) for link in at.get("page_link")]


def column_config(at: AppTest, column: str) -> dict[str, Any]:
    """How the first table with this column shows it (label, width, help, type)."""
    shown = next(d for d in at.dataframe if column in d.value.columns)
    return dict(json.loads(shown.proto.columns).get(column, {}))


def chart_rows(chart: Any) -> list[dict[str, Any]]:
    """The rows a chart plots (Streamlit sends each of its data sets as Arrow)."""
    return [row for named in chart.proto.datasets for row in pa.ipc.open_stream(named.data.data).read_all().to_pylist()]


def every_table_and_text(open_app: OpenApp, catalog: Path) -> tuple[set[str], str]:
    """The column names of every table on every page (a record page with a stored and a refused id) and every
    cell and sentence, as one text."""
    columns: set[str] = set()
    shown: list[str] = []
    for name in PAGES:
        at = page(open_app, catalog, name)
        runs = [at]
        if name == "record":
            for record_id in ("a1", "b4"):
                at.text_input(key="record_id").input(record_id).run()
                runs.append(at)
        for run in runs:
            for table in run.dataframe:
                columns |= {str(c) for c in table.value.columns}
                shown.append(table.value.to_csv())
            shown.append(text(run))
    return columns, "\n".join(shown)


LONG_DETAIL = (
    "Drift of the features: 3 of 4 columns drifted (amount, colour, term and income moved against the reference "
    "window of the version in production, each significant after the correction for many columns and material "
    "beyond its bar), above the alert threshold of one half; the embedding columns held, so the change is in the "
    "raw features and the model may still rank well, but the inputs it sees are no longer the ones it learnt on"
)
DAY4 = tw.DAY3 + timedelta(days=1)
THIRD_REPORT = [
    tw.metric("drift_share_features", 0.75, "alert", 0.5),
    tw.metric("column_drift", 0.20, "alert", 0.1, "amount", p_value=0.001),
    tw.metric("prediction_drift", 0.02, "ok", 0.1, "score", p_value=0.8),
]


@pytest.fixture(scope="module")
def three_reports(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """The tiny warehouse and a third report, a day after the second, whose alert has a long detail."""
    tiny = tiny_warehouse(tmp_path_factory.mktemp("three"))
    rows = tw.monitoring_table("r3", "v2", DAY4, tiny.reports / "r3.html", THIRD_REPORT).to_pylist()
    rows[0]["detail"] = LONG_DETAIL
    table = pa.Table.from_pylist(rows, tw.monitoring_table("r3", "v2", DAY4, tiny.reports, []).schema)
    tiny.store.commit("monitoring", "r3", table, partition=f"{DAY4:%F}")
    build_catalog(tiny.store)
    return tiny


def test_whole_numbers_are_written_without_a_fraction_where_features_appear(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "record")
    at.text_input(key="record_id").input("a3").run()
    features = at.dataframe[-1].value
    assert dict(zip(features["feature"], features["value"], strict=True)) == {"amount": "30", "colour": "blue"}
    assert "amount 30 raised the risk most" in text(at)  # the reason's value was stored as "30.0"
    assert not re.search(r"\b30\\?\.0\b", text(at))
    from dashboard.ui import plain_number

    assert [plain_number(v) for v in ("10000.0", "-3.00", "24.1", "1e+20", "red", None)] == [
        "10000",
        "-3",
        "24.1",
        "1e+20",
        "red",
        None,
    ]


def test_every_cut_text_can_be_read_whole(open_app: OpenApp, three_reports: Tiny) -> None:
    at = page(open_app, three_reports.catalog, "monitoring")
    detail = column_config(at, "detail")
    assert detail["width"] == "large" and "full text below" in detail["help"]
    assert table_with(at, "metric")["detail"].tolist()[0] == LONG_DETAIL  # the cell holds it, cut to the width
    assert f"{ui.when(DAY4)}, drift: {ui.text(LONG_DETAIL)}" in text(at)  # and it is shown whole below
    assert "Each alert's detail in full (3)" in [e.label for e in at.expander]

    at = page(open_app, three_reports.catalog, "models")
    assert column_config(at, "reason")["width"] == "large"
    assert f"**v3** rejected, {ui.when(tw.DAY3 + timedelta(hours=1))}: rejected\\: v3 lost to v2" in text(at)


def test_no_table_shows_batch_ids_or_other_internal_ids(open_app: OpenApp, tiny: Tiny) -> None:
    columns, _ = every_table_and_text(open_app, tiny.catalog)
    internal = {"batch_id", "report_id", "episode_id", "row_hash", "fingerprint", "artifact_sha256", "metrics_json"}
    days = {"ingested_on", "scored_on", "received_on", "quarantined_on", "monitored_on", "event_on"}
    assert not columns & (internal | days), columns & (internal | days)
    assert {"model_version", "flow_run_id", "record_id"} <= columns  # the tables people read are all there


def test_recently_scored_ids_link_to_their_record(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "record")
    assert page_links(at) == [(f"`{i}`", "record", f"record_id={i}") for i in ("a1", "a2", "a3")]
    at.text_input(key="record_id").input("zz").run()  # an unknown id offers them too
    assert "No record with id `zz`" in text(at) and len(page_links(at)) == 3
    at.query_params["record_id"] = "a2"  # what following the second link does
    at.run()
    assert at.text_input(key="record_id").value == "a2"
    assert "**v2** scored it **0.6000**" in text(at)
    at.text_input(key="record_id").input("b1").run()  # typing again still wins over the old link
    assert at.query_params["record_id"] == "b1" and "**v2** scored it **0.3000**" in text(at)


def test_a_time_range_narrows_the_monitoring_charts(open_app: OpenApp, three_reports: Tiny) -> None:
    at = page(open_app, three_reports.catalog, "monitoring")
    assert "The charts show 3 of 3 reports." in text(at)
    assert table_with(at, "verdict")["distance"].tolist() == [0.05, 0.30, 0.02]
    at.selectbox(key="monitoring.trend_column").set_value("amount").run()
    assert "2 of 2 reports in the range found amount drifted" in text(at)

    at.date_input(key="monitoring.days").set_value((tw.DAY3.date(), DAY4.date())).run()
    assert "The charts show 2 of 3 reports." in text(at)
    assert table_with(at, "verdict")["distance"].tolist() == [0.30, 0.02]
    plotted = [row for row in chart_rows(at.get("vega_lite_chart")[0]) if row.get("status") is not None]
    assert sorted(row["value"] for row in plotted) == [0.25, 0.75, 0.75]  # r2 (features, embedding) and r3

    at.date_input(key="monitoring.days").set_value((DAY4.date(), DAY4.date())).run()
    assert "1 of 1 reports in the range found amount drifted" in text(at)
    trend = table_with(at, "drifted")  # the column's statistic and its threshold, per report
    assert trend[["distance", "material_at"]].values.tolist() == [[0.20, 0.1]]


def test_one_columns_trend_plots_its_statistic_against_its_threshold(open_app: OpenApp, three_reports: Tiny) -> None:
    at = page(open_app, three_reports.catalog, "monitoring")
    at.selectbox(key="monitoring.trend_column").set_value("amount").run()
    rows = next(
        rows
        for rows in map(chart_rows, at.get("vega_lite_chart"))
        if any(r["series"] == "amount: distance" for r in rows)
    )
    assert sorted((r["series"], r["value"]) for r in rows) == [
        ("alert threshold", 0.1),
        ("alert threshold", 0.1),
        ("amount: distance", 0.2),
        ("amount: distance", 0.4),
    ]


def test_the_monitoring_rows_and_the_model_versions_download_as_csv(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "monitoring")
    assert "Download the monitoring rows of this range as CSV" in [b.proto.label for b in at.get("download_button")]
    with queries.CatalogReader(tiny.catalog).cursor() as con:
        exported = pd.read_csv(io.BytesIO(queries.export_monitoring(con, tw.DAY3.date(), tw.DAY3.date())))
        every = pd.read_csv(io.BytesIO(queries.export_monitoring(con, None, None)))
        versions = queries.model_versions(con)
    assert set(exported["report_id"]) == {"r2"} and len(exported) == len(tw.SECOND_REPORT)
    assert set(exported["flow_run_id"]) == {tw.RUN_MONITOR} and "batch_id" not in exported
    assert len(every) == len(tw.FIRST_REPORT) + len(tw.SECOND_REPORT)

    at = page(open_app, tiny.catalog, "models")
    assert "Download the versions as CSV" in [b.proto.label for b in at.get("download_button")]
    from dashboard.ui import csv_bytes

    table = pd.read_csv(io.BytesIO(csv_bytes(versions)))
    assert table["model_version"].tolist() == ["v1", "v2", "v3"]
    assert table["status"].tolist() == ["retired", "champion", "rejected"]
    assert table["flow_run_id"].fillna("").tolist() == ["", tw.RUN_RETRAIN, ""]


def test_batches_and_reports_link_to_the_prefect_run_that_made_them(
    open_app: OpenApp, tiny: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(open_app, tiny.catalog, "monitoring")  # no Prefect address known: the ids, plainly
    assert table_with(at, "flow_run_id")["flow_run_id"].tolist() == [tw.RUN_MONITOR, None]  # r2, then r1
    assert column_config(at, "flow_run_id")["label"] == "Prefect run"
    assert f"This report was made by Prefect run `{tw.RUN_MONITOR}`." in text(at)

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    at = page(open_app, tiny.catalog, "monitoring")
    link = f"http://127.0.0.1:4200/runs/flow-run/{tw.RUN_MONITOR}"
    assert table_with(at, "flow_run_id")["flow_run_id"].tolist() == [link, None]
    assert column_config(at, "flow_run_id")["type_config"]["type"] == "link"
    assert f"This report was made by Prefect run [`{tw.RUN_MONITOR}`]({link})." in text(at)

    monkeypatch.setenv("PREFECT_UI_URL", "http://prefect.example:8080/")  # its own address wins
    at = page(open_app, tiny.catalog, "models")
    ui_link = f"http://prefect.example:8080/runs/flow-run/{tw.RUN_RETRAIN}"
    assert table_with(at, "trained_at")["flow_run_id"].tolist() == [None, ui_link, None]
    events = next(d.value for d in at.dataframe if {"event", "flow_run_id"} <= set(d.value.columns))
    assert set(events.loc[events["model_version"] == "v2", "flow_run_id"]) == {ui_link}
    at = page(open_app, tiny.catalog, "overview")
    ingest = f"http://prefect.example:8080/runs/flow-run/{tw.RUN_INGEST}"
    assert f"Ingested `f2.csv`: **3** records, 2026-01-02 06:00 UTC by Prefect run [`{tw.RUN_INGEST}`]({ingest})" in (
        text(at)
    )


def test_the_prefect_ui_address_comes_from_its_setting_or_the_api() -> None:
    from dashboard.settings import prefect_ui_of

    assert prefect_ui_of("http://ui:4200/", "http://api:4200/api") == "http://ui:4200"
    assert prefect_ui_of(None, "http://127.0.0.1:4200/api/") == "http://127.0.0.1:4200"
    assert prefect_ui_of(" ", None) is None and prefect_ui_of(None, None) is None


def _layout_before_run_ids(root: Path) -> Warehouse:
    """The warehouse as the layout before the flow-run column wrote it."""
    current = open_warehouse(root, tw.FEATURES, event_time=False)
    older = [
        replace(t, schema=pa.schema([f for f in t.schema if f.name != FLOW_RUN_ID]), optional=())
        if t.name in RUN_LINKED
        else t
        for t in current.tables.values()
    ]
    return Warehouse(root, older, VIEWS)


def test_a_warehouse_from_before_the_run_column_shows_its_rows_then_the_new_runs(
    open_app: OpenApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _layout_before_run_ids(tmp_path / "warehouse")
    old.init()
    tw.add_records_and_predictions(old)
    tw.add_labels(old)
    tw.add_reports(old, tmp_path / "reports")
    catalog = build_catalog(old)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    for name in ("overview", "monitoring", "models"):  # the catalog not rebuilt yet: no column, no error
        at = page(open_app, catalog, name)
        assert "could not be read" not in text(at) and "by Prefect run" not in text(at)
    assert table_with(at, "trained_at")["flow_run_id"].isna().all()

    store = open_warehouse(tmp_path / "warehouse", tw.FEATURES, event_time=False)
    store.init()  # what every flow does first: the layout's new columns are added to the tables
    for table in RUN_LINKED:
        assert FLOW_RUN_ID in store.delta(table).schema().to_arrow().names
    third = tw.monitoring_table("r3", "v2", DAY4, tmp_path / "reports" / "r3.html", THIRD_REPORT, run="run-3")
    store.commit("monitoring", "r3", third, partition=f"{DAY4:%F}")
    build_catalog(store)
    at = page(open_app, catalog, "monitoring")
    at.button[0].click().run()  # "Refresh now": answers of the old catalog are otherwise reused for a few seconds
    reports = table_with(at, "flow_run_id")
    assert reports["flow_run_id"].tolist() == ["http://127.0.0.1:4200/runs/flow-run/run-3", None, None]
    assert page(open_app, catalog, "overview").markdown  # the old rows read as null: no run named
    assert "by Prefect run" not in text(page(open_app, catalog, "overview"))


def test_the_real_flows_record_their_runs_and_the_pages_link_them(
    open_app: OpenApp, tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Train, then one cycle (ingest, score, labels, monitor) through the real flows: each run's id is stored
    with what it wrote, it is the id of a run of that flow on the Prefect server, and the pages link it."""
    from prefect.client.orchestration import get_client

    from flows.cycle import scoring_cycle
    from flows.train import train
    from tests.dashboard.test_browser import drop_arrivals_and_their_labels
    from tests.flows.conftest import Project

    document = repo_config_document(chunk_rows=500)
    document["retrain"] = {"every_new_labels": 1_000_000, "on_drift": False, "on_quality_drop": False}
    project = Project(folder=tmp_path, config_path=write_toml(tmp_path / "scorehouse.toml", document))
    train(project.config)
    drop_arrivals_and_their_labels(project)
    scoring_cycle(project.config)

    stored = {
        table: project.query(f"SELECT DISTINCT flow_run_id, batch_id FROM {table}")
        for table in ("records", "models", "monitoring")
    }
    with get_client(sync_client=True) as client:
        for table, flow_name in (("records", "ingest"), ("models", "train"), ("monitoring", "monitor")):
            runs = set(stored[table]["flow_run_id"])
            assert len(runs) == 1 and None not in runs, (table, runs)
            run = client.read_flow_run(UUID(runs.pop()))
            assert client.read_flow(run.flow_id).name == flow_name

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    catalog = project.settings.catalog_path
    at = page(open_app, catalog, "monitoring")
    monitor_run = stored["monitoring"]["flow_run_id"].iloc[0]
    assert table_with(at, "flow_run_id")["flow_run_id"].tolist() == [
        f"http://127.0.0.1:4200/runs/flow-run/{monitor_run}"
    ]
    ingest_run = stored["records"]["flow_run_id"].iloc[0]
    assert f"by Prefect run [`{ingest_run}`](http://127.0.0.1:4200/runs/flow-run/{ingest_run})" in text(
        page(open_app, catalog, "overview")
    )
    _, shown = every_table_and_text(open_app, catalog)
    batch_ids = {b for frame in stored.values() for b in frame["batch_id"]}
    assert batch_ids and not [b for b in batch_ids if b in shown]  # no batch id anywhere people read
