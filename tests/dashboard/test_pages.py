"""Every page of the dashboard with Streamlit's AppTest, on the tiny warehouse: the numbers shown,
filters that narrow the rows, a record's history, and what each page says when something is missing."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.settings import DashboardSettings
from tests.conftest import tiny_config_document, write_toml
from tests.dashboard import tiny_warehouse as tw
from tests.dashboard.conftest import APP
from tests.dashboard.tiny_warehouse import Tiny, add_records_and_predictions, empty_warehouse, tiny_warehouse
from warehouse.catalog import build_catalog

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


def test_predictions_filters_narrow_the_rows(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "predictions")
    assert metrics(at)["Matching predictions"] == "12" and len(at.dataframe[0].value) == 12

    at.multiselect(key="predictions.versions").select("v1").run()
    assert metrics(at)["Matching predictions"] == "6"
    at.radio(key="predictions.labelled").set_value("known").run()
    assert metrics(at)["Matching predictions"] == "2"  # a1 and a2 by v1
    table = at.dataframe[0].value
    assert table["true_label"].tolist() == ["no", "yes"] and table["correct"].tolist() == [True, True]
    assert table["record_id"].tolist() == ["record?record_id=a1", "record?record_id=a2"]  # links to the record

    at.radio(key="predictions.labelled").set_value("any").run()
    at.text_input(key="predictions.id_prefix").input("b").run()
    assert metrics(at)["Matching predictions"] == "3"
    at.slider(key="predictions.score").set_value((0.3, 1.0)).run()
    assert metrics(at)["Matching predictions"] == "2"  # b2 0.45, b3 0.70
    assert metrics(at)["Predicted no (50.0%)"] == "1"
    assert not at.exception


def test_predictions_page_through_the_rows_and_say_when_nothing_matches(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "predictions")
    at.date_input(key="predictions.days").set_value((date(2026, 1, 2), date(2026, 1, 2))).run()
    assert metrics(at)["Matching predictions"] == "3"
    at.text_input(key="predictions.id_prefix").input("nobody").run()
    assert "No prediction matches these filters." in text(at)
    assert not at.exception


def test_the_download_says_when_it_is_capped(open_app: OpenApp, tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOREHOUSE_DASHBOARD_EXPORT_ROWS", "5")
    at = page(open_app, tiny.catalog, "predictions")
    assert "12 predictions match, the file holds the newest 5 (the download is capped)" in text(at)
    assert len(at.get("download_button")) == 1


# ------------------------------------------------------------------------------------------ record


def test_a_record_lookup_shows_its_history_label_and_features(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "record")
    assert "Recently scored: `a1`, `a2`, `a3`" in text(at)
    at.text_input(key="record_id").input("a1").run()
    assert not at.exception
    shown = text(at)
    assert "**v2** scored it **0.1500**: predicted **no**" in shown
    assert "True label **no**" in shown and "the prediction was **right**" in shown
    history = at.dataframe[0].value
    assert history["model_version"].tolist() == ["v1", "v2"] and history["score"].tolist() == [0.10, 0.15]
    assert "2 labels were received for it; the latest counts." in shown
    assert "higher than **0.0%** of the predictions v2 made" in shown
    features = at.dataframe[-1].value
    assert dict(zip(features["feature"], features["value"], strict=True)) == {"amount": "10.0", "colour": "red"}
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
    assert (
        "Latest report: **v2**" in shown
        and "Alerts: drift\\_share\\_features\\, prediction\\_drift\\(score\\)" in shown
    )
    assert len(at.get("vega_lite_chart")) == 7  # drift share, prediction drift, five quality charts
    alerts = at.dataframe[0].value
    assert alerts["metric"].tolist() == ["drift_share_features", "prediction_drift"]
    at.toggle(key="monitoring.per_column").set_value(True).run()
    assert "amount" in at.dataframe[0].value["column_name"].tolist()

    assert at.selectbox(key="monitoring.report").value == "r2"
    at.toggle(key="monitoring.show_report").set_value(True).run()
    assert not at.exception and len(at.get("download_button")) == 1
    at.selectbox(key="monitoring.report").set_value("r1").run()
    assert "r1.html` is gone" in text(at)


# ------------------------------------------------------------------------------------------ models


def test_models_lists_versions_champions_and_decisions(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "models")
    assert "Champion now: **v2**, of 3 version(s) trained." in text(at)
    versions, periods, events = (d.value for d in at.dataframe[:3])
    assert versions["status"].tolist() == ["retired", "champion", "rejected"]
    assert periods["model_version"].tolist() == ["v1", "v2"]
    assert "rejected: v3 lost to v2" in events["reason"].tolist()


# ------------------------------------------------------------------------------------- explanations


def test_the_record_page_says_why_in_words_with_a_waterfall(open_app: OpenApp, tiny: Tiny) -> None:
    at = page(open_app, tiny.catalog, "record")
    at.text_input(key="record_id").input("a3").run()
    shown = text(at)
    assert "Why this score" in shown
    # (escaped as markdown: a stored value is data, never formatting)
    assert "1. amount 30\\.0 raised the risk most\n2. colour blue raised the risk" in shown
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
