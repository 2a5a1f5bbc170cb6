"""Scorehouse dashboard: what the pipeline stored, for people, read-only. It never calls a model.

    make dashboard     # http://127.0.0.1:8501

The catalog is opened read-only and every query is a parameterized function of `warehouse.queries`;
answers are reused for a few seconds, so new batches appear without a restart. A missing or broken
warehouse shows what to run instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import streamlit as st
from deltalake.exceptions import TableNotFoundError

from dashboard import data, ui
from dashboard.settings import DashboardSettings
from pipeline.config import ConfigError
from warehouse.queries import CatalogMissing

PAGES = Path(__file__).resolve().parent / "app_pages"
PAGE_ICON = "📊"


def pages() -> list[st.Page]:
    return [
        st.Page(PAGES / "overview.py", title="Overview", icon=":material/home:", default=True),
        st.Page(PAGES / "predictions.py", title="Predictions", icon=":material/table:", url_path="predictions"),
        st.Page(PAGES / "record.py", title="Record", icon=":material/search:", url_path="record"),
        st.Page(PAGES / "monitoring.py", title="Monitoring", icon=":material/monitoring:", url_path="monitoring"),
        st.Page(PAGES / "explanations.py", title="Explanations", icon=":material/psychology:", url_path="explanations"),
        st.Page(PAGES / "models.py", title="Models", icon=":material/model_training:", url_path="models"),
    ]


def sidebar(settings: DashboardSettings, source: str) -> None:
    what = "Warehouse" if "://" in source else "Catalog"
    with st.sidebar:
        st.caption(f"{what} {ui.code(source)}, read-only. Answers are at most {settings.ttl_seconds:g} s old.")
        if st.button("Refresh now", icon=":material/refresh:"):
            data.refresh()


def main() -> None:
    # The tab icon is an emoji: Streamlit fetches a `:material/...:` page icon from fonts.gstatic.com, and the
    # dashboard must work offline. The navigation's material icons come from the font Streamlit bundles.
    st.set_page_config(page_title="Scorehouse", page_icon=PAGE_ICON, layout="wide")
    page = st.navigation(pages())
    settings = data.settings()
    try:
        source = settings.source()
    except ConfigError as error:
        st.error(f"{error}\n\nOr set `SCOREHOUSE_CATALOG` to the catalog to read.")
        return
    sidebar(settings, source)
    if "://" not in source and not Path(source).is_file():
        ui.no_catalog(Path(source))
        return
    try:
        page.run()
    except CatalogMissing as missing:  # removed while the page ran
        ui.no_catalog(missing.path)
    except TableNotFoundError:  # a warehouse on object storage that was never initialised
        ui.no_catalog(source)
    except duckdb.Error as error:
        ui.unreadable(error)


if __name__ == "__main__":
    main()
