"""The dashboard's queries on a tiny warehouse whose every number is known; the reader is read-only
and follows a replaced catalog."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.dashboard.tiny_warehouse import DAY2, DAY3, Tiny, empty_warehouse, tiny_warehouse
from warehouse import queries
from warehouse.catalog import build_catalog
from warehouse.queries import CatalogMissing, CatalogReader, PredictionFilter


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return tiny_warehouse(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def con(tiny: Tiny) -> Iterator[duckdb.DuckDBPyConnection]:
    with CatalogReader(tiny.catalog).cursor() as cursor:
        yield cursor


def matching(con: duckdb.DuckDBPyConnection, where: PredictionFilter) -> int:
    return queries.score_histogram(con, where).rows


# ------------------------------------------------------------------------------------------ reader


def test_the_reader_refuses_to_write(tiny: Tiny) -> None:
    with CatalogReader(tiny.catalog).cursor() as con:
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("CREATE TABLE scratch AS SELECT 1 AS x")
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("CREATE VIEW scratch AS SELECT 1 AS x")


def test_a_missing_catalog_is_reported_not_created(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with pytest.raises(CatalogMissing) as raised, CatalogReader(path).cursor():
        pass
    assert raised.value.path == path
    assert not path.exists()


def test_a_replaced_catalog_is_picked_up_while_an_old_cursor_is_still_open(tmp_path: Path) -> None:
    store = empty_warehouse(tmp_path / "warehouse")
    reader = CatalogReader(store.root / "warehouse.duckdb")
    with reader.cursor() as old:
        assert old.execute("SELECT count(*) FROM records").fetchone() == (0,)
        store.views["answer"] = "SELECT 42 AS value"  # the views changed: the catalog file is replaced
        build_catalog(store)
        with reader.cursor() as new:
            assert new.execute("SELECT value FROM answer").fetchone() == (42,)
        assert old.execute("SELECT count(*) FROM predictions").fetchone() == (0,)  # still answers


def test_reading_every_query_writes_nothing(tmp_path: Path) -> None:
    tiny = tiny_warehouse(tmp_path)

    def files() -> dict[str, tuple[int, int, int]]:
        return {
            str(p.relative_to(tmp_path)): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in tmp_path.rglob("*")
        }

    before = files()
    with CatalogReader(tiny.catalog).cursor() as con:
        run_every_query(con)
    assert files() == before


def run_every_query(con: duckdb.DuckDBPyConnection) -> None:
    queries.totals(con)
    queries.champion(con)
    queries.last_ingest(con)
    queries.last_scoring(con)
    queries.last_alert(con)
    queries.quarantine_reasons(con)
    queries.prediction_options(con)
    where = PredictionFilter(labelled=True, record_id="a")
    queries.score_histogram(con, where)
    queries.prediction_page(con, where, limit=2, offset=1)
    queries.export_predictions(con, where, 10)
    queries.record(con, "a1")
    queries.record_predictions(con, "a1")
    queries.record_labels(con, "a1")
    queries.record_quarantine(con, "b4")
    queries.score_rank(con, "v2", 0.5)
    queries.recent_record_ids(con)
    queries.monitoring_series(con)
    queries.alerts(con)
    queries.drifted_columns(con)
    queries.prediction_drift(con)
    queries.labelled_quality(con, where, "yes")
    queries.decisions(con)
    queries.reports(con)
    queries.column_drift(con, "r2")
    queries.model_versions(con)
    queries.champion_periods(con)
    queries.registry_events(con)


# ---------------------------------------------------------------------------------------- overview


def test_totals_count_every_table(con: duckdb.DuckDBPyConnection) -> None:
    assert queries.totals(con) == queries.Totals(
        records=6, predictions=12, labels=3, quarantined_rows=2, rejected_labels=0, model_versions=3, reports=2
    )


def test_the_champion_is_the_last_promoted_version(con: duckdb.DuckDBPyConnection) -> None:
    champion = queries.champion(con)
    assert champion is not None
    assert (champion.model_version, champion.roc_auc, champion.reason) == ("v2", 0.8, "promoted: v2 beat v1")


def test_the_last_batches(con: duckdb.DuckDBPyConnection) -> None:
    ingested, scored = queries.last_ingest(con), queries.last_scoring(con)
    assert ingested is not None and (ingested.source, ingested.rows, ingested.written_at) == ("f2.csv", 3, DAY2)
    assert scored is not None and (scored.source, scored.rows, scored.written_at) == ("v2", 6, DAY3)


def test_the_last_alert_is_of_a_whole_report_not_of_a_column(con: duckdb.DuckDBPyConnection) -> None:
    alert = queries.last_alert(con)
    assert alert is not None
    assert (alert.metric, alert.value, alert.threshold, alert.model_version) == (
        "drift_share_features",
        0.75,
        0.5,
        "v2",
    )


def test_quarantine_reasons(con: duckdb.DuckDBPyConnection) -> None:
    reasons = queries.quarantine_reasons(con, 1)
    assert len(reasons) == 1 and reasons["rows"].tolist() == [1]


# ------------------------------------------------------------------------------------- predictions


def test_options_are_the_days_versions_and_labels_present(con: duckdb.DuckDBPyConnection) -> None:
    assert queries.prediction_options(con) == queries.PredictionOptions(
        first_day=date(2026, 1, 1),
        last_day=date(2026, 1, 3),
        model_versions=("v1", "v2"),
        labels=("no", "yes"),  # negative first: "yes" is what a score at or above the threshold predicts
        positive_label="yes",
    )


@pytest.mark.parametrize(
    ("where", "rows"),
    [
        (PredictionFilter(history=True), 12),
        (PredictionFilter(history=True, model_versions=("v1",)), 6),
        (PredictionFilter(history=True, labels=("yes",)), 7),
        (
            PredictionFilter(history=True, score_min=0.5, score_max=0.7),
            5,
        ),  # 0.55, 0.70 (bounds included), 0.60, 0.52, 0.65
        (PredictionFilter(history=True, scored_from=date(2026, 1, 2), scored_to=date(2026, 1, 2)), 3),
        (PredictionFilter(history=True, scored_from=date(2026, 1, 3)), 6),
        (PredictionFilter(history=True, labelled=True), 4),  # a1 and a2, by v1 and v2
        (PredictionFilter(history=True, labelled=False), 8),
        (PredictionFilter(history=True, record_id="b"), 6),
        (PredictionFilter(history=True, record_id="a1"), 2),
        (PredictionFilter(history=True, record_id="A1"), 0),  # ids are matched as they are
        (PredictionFilter(history=True, model_versions=("v1",), labels=("no",), labelled=False), 2),  # b1, b2
        (PredictionFilter(), 6),  # by default one row per record: its current prediction (v2's)
        (PredictionFilter(model_versions=("v1",)), 0),  # v1 is no record's current prediction
        (PredictionFilter(labelled=True), 2),
    ],
)
def test_each_filter_narrows_the_rows(con: duckdb.DuckDBPyConnection, where: PredictionFilter, rows: int) -> None:
    assert matching(con, where) == rows
    assert len(queries.prediction_page(con, where, limit=100, offset=0)) == rows


def test_filter_values_travel_as_parameters_never_as_sql(con: duckdb.DuckDBPyConnection) -> None:
    hostile = "a' OR 1=1 --"
    where = PredictionFilter(record_id=hostile, model_versions=("v1') OR ('1'='1",), labels=("x",))
    sql, params = where.where()
    assert hostile not in sql and "1=1" not in sql
    assert hostile in params
    assert matching(con, where) == 0


def test_the_histogram_counts_by_bin_and_label(con: duckdb.DuckDBPyConnection) -> None:
    histogram = queries.score_histogram(con, PredictionFilter(history=True, model_versions=("v1",)), bins=10)
    assert histogram.rows == 6 and histogram.by_label == {"no": 3, "yes": 3}
    assert histogram.mean_score == pytest.approx((0.10 + 0.55 + 0.90 + 0.20 + 0.45 + 0.70) / 6)
    assert histogram.bins["rows"].sum() == 6
    top = histogram.bins[histogram.bins["bin_start"] == 0.9]
    assert top["rows"].tolist() == [1] and top["bin_end"].tolist() == [1.0]  # a score of 1 goes into the last bin
    assert histogram.thresholds == (0.5,)


@pytest.mark.parametrize(
    ("where", "sizes"),
    [(PredictionFilter(history=True), [5, 5, 2]), (PredictionFilter(history=True, labelled=False), [5, 3, 0])],
)
def test_pages_are_newest_first_and_cover_every_row_once(
    con: duckdb.DuckDBPyConnection, where: PredictionFilter, sizes: list[int]
) -> None:
    # v2 scored six rows at the same instant, so pages of five cut through rows that tie on scored_at
    pages = [queries.prediction_page(con, where, limit=5, offset=offset) for offset in (0, 5, 10)]
    assert [len(p) for p in pages] == sizes
    seen = [(r, v) for page in pages for r, v in zip(page["record_id"], page["model_version"], strict=True)]
    assert len(set(seen)) == sum(sizes)
    keys = [(-t.value, r, v) for page in pages for t, r, v in page[["scored_at", "record_id", "model_version"]].values]
    assert keys == sorted(keys)


def test_a_page_shows_the_latest_true_label_and_whether_the_prediction_was_right(
    con: duckdb.DuckDBPyConnection,
) -> None:
    page = queries.prediction_page(con, PredictionFilter(history=True, record_id="a"), limit=10, offset=0).set_index(
        ["record_id", "model_version"]
    )
    assert page.loc[("a1", "v1"), "true_label"] == "no"  # the correction wins
    assert page.loc[("a1", "v1"), "verdict"] == "right"  # predicted no, before the label
    assert page.loc[("a2", "v1"), "verdict"] == "right"  # predicted yes, was yes
    # v2 re-scored both on day 3, after their labels were known: not judged, whatever it predicted.
    assert page.loc[("a2", "v2"), "verdict"] == page.loc[("a1", "v2"), "verdict"] == queries.MADE_AFTER_LABEL
    assert page["true_label"].isna()[("a3", "v1")] and page["verdict"].isna()[("a3", "v1")]


def test_labelled_quality_judges_only_predictions_made_before_the_label(con: duckdb.DuckDBPyConnection) -> None:
    current = queries.labelled_quality(con, PredictionFilter(), "yes")
    assert (current.judged, current.made_after_label, current.roc_auc) == (0, 2, None)
    every = queries.labelled_quality(con, PredictionFilter(history=True), "yes")
    assert (every.judged, every.made_after_label, every.roc_auc) == (2, 2, 1.0)
    assert every.rates() == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "balanced_accuracy": 1.0}


def test_quality_rates_from_a_confusion_matrix() -> None:
    matrix = pd.DataFrame(
        {"predicted": ["yes", "yes", "no", "no"], "actual": ["yes", "no", "yes", "no"], "rows": [3, 1, 2, 4]}
    )
    quality = queries.LabelledQuality(matrix=matrix, judged=10, made_after_label=0, positive_label="yes", roc_auc=None)
    assert quality.rates() == pytest.approx(
        {"accuracy": 0.7, "precision": 0.75, "recall": 0.6, "balanced_accuracy": (0.6 + 0.8) / 2}
    )


def test_the_csv_export_is_bounded_and_says_so(con: duckdb.DuckDBPyConnection) -> None:
    whole = queries.export_predictions(con, PredictionFilter(model_versions=("v2",)), max_rows=100)
    assert (whole.rows, whole.capped) == (6, False)
    rows = list(csv.DictReader(io.StringIO(whole.data.decode())))
    assert len(rows) == 6 and {"record_id", "model_version", "score", "true_label", "verdict"} <= set(rows[0])
    capped = queries.export_predictions(con, PredictionFilter(history=True), max_rows=4)
    assert (capped.rows, capped.capped) == (4, True)
    assert len(list(csv.DictReader(io.StringIO(capped.data.decode())))) == 4


# ------------------------------------------------------------------------------------------ record


def test_a_record_its_predictions_labels_and_rank(con: duckdb.DuckDBPyConnection) -> None:
    stored = queries.record(con, "a1")
    assert stored is not None and (stored["amount"], stored["colour"], stored["source_file"]) == (10.0, "red", "f1.csv")
    assert set(stored) - queries.RECORD_METADATA == {"amount", "colour"}
    history = queries.record_predictions(con, "a1")
    assert history[["model_version", "score", "label"]].values.tolist() == [["v1", 0.10, "no"], ["v2", 0.15, "no"]]
    assert history["verdict"].tolist() == ["right", queries.MADE_AFTER_LABEL]
    assert queries.record_labels(con, "a1")["label"].tolist() == ["no", "yes"]  # the one that counts first
    assert queries.score_rank(con, "v2", 0.15) == 0.0
    assert queries.score_rank(con, "v2", 0.61) == pytest.approx(4 / 6)
    assert queries.score_rank(con, "v9", 0.5) is None


def test_an_unknown_or_refused_id(con: duckdb.DuckDBPyConnection) -> None:
    assert queries.record(con, "zz") is None and queries.record_predictions(con, "zz").empty
    assert queries.record(con, "b4") is None
    assert queries.record_quarantine(con, "b4")["rule"].tolist() == ["min"]


def test_recent_record_ids_are_the_latest_scored(con: duckdb.DuckDBPyConnection) -> None:
    assert queries.recent_record_ids(con, 2) == ["a1", "a2"]


# -------------------------------------------------------------------------------------- monitoring


def test_monitoring_series_reports_and_alerts(con: duckdb.DuckDBPyConnection) -> None:
    series = queries.monitoring_series(con)
    assert "column_drift" not in set(series["metric"]) and len(series) == 6 + 10
    reports = queries.reports(con)
    assert reports["report_id"].tolist() == ["r2", "r1"]
    assert reports["alerts"].tolist() == [2, 0] and reports["retrain_due"].tolist() == [True, False]
    assert reports["alerted"].iloc[0] == "drift, prediction_drift" and reports["drifted_columns"].tolist() == [1, 0]
    # One notion of alert: neither the drifted column nor the CBPE flag (both in status 'alert') is one.
    assert queries.alerts(con)["alert"].tolist() == ["drift", "prediction_drift"]
    assert queries.drifted_columns(con)["column_name"].tolist() == ["amount"]
    assert queries.prediction_drift(con)["verdict"].tolist() == ["no drift", "drift"]
    drift = queries.column_drift(con, "r2")
    assert drift["column_name"].tolist() == ["amount", "colour"]


# ------------------------------------------------------------------------------------------ models


def test_versions_champion_periods_and_decisions(con: duckdb.DuckDBPyConnection) -> None:
    versions = queries.model_versions(con)
    assert dict(zip(versions["model_version"], versions["status"], strict=True)) == {
        "v1": "retired",
        "v2": "champion",
        "v3": "rejected",
    }
    periods = queries.champion_periods(con)
    assert periods["model_version"].tolist() == ["v1", "v2"] and periods["champion_until"].isna().tolist() == [
        False,
        True,
    ]
    events = queries.registry_events(con)
    assert events.iloc[0][["model_version", "event"]].tolist() == ["v3", "rejected"]
    assert len(events) == 7


# ------------------------------------------------------------------------------------------- empty


def test_an_empty_warehouse_answers_every_query_with_nothing(tmp_path: Path) -> None:
    store = empty_warehouse(tmp_path / "warehouse")
    with CatalogReader(store.root / "warehouse.duckdb").cursor() as con:
        run_every_query(con)
        assert queries.totals(con) == queries.Totals(
            records=0, predictions=0, labels=0, quarantined_rows=0, rejected_labels=0, model_versions=0, reports=0
        )
        assert queries.champion(con) is None and queries.last_ingest(con) is None and queries.last_alert(con) is None
        assert queries.prediction_options(con).first_day is None
        assert queries.score_histogram(con, PredictionFilter()).rows == 0
        assert queries.recent_record_ids(con) == []


def test_the_catalog_is_found_from_any_working_directory(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(os.sep)
    with CatalogReader(tiny.catalog).cursor() as con:
        assert queries.totals(con).records == 6
