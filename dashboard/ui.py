"""What the pages share: how times and numbers are written, and what to run when something is missing.

Every empty state names the missing thing and the command that produces it, never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import streamlit as st

NO_PREDICTIONS = (
    "No predictions yet. `uv run scorehouse train` trains the first champion; files dropped into the incoming "
    "folder are then stored and scored by `uv run scorehouse cycle`. `make demo` does all of it with the sample."
)
NO_LABELS = (
    "No labels yet. Label files (the id column, `label`, `labelled_at`) dropped into the feedback folder are "
    "collected by `uv run scorehouse cycle`."
)
NO_REPORTS = (
    "No monitoring reports yet. `uv run scorehouse cycle` runs the monitor after scoring; `make demo` runs "
    "several days of cycles."
)
NO_MODELS = "No model versions yet. `uv run scorehouse train` trains and registers the first one (or `make demo`)."


def no_catalog(path: Path | str) -> None:
    st.info(
        f"There is no warehouse at {code(path)} yet. `make demo` builds one from the bundled sample; for your own "
        "data run `uv run scorehouse init`, `uv run scorehouse train`, then `uv run scorehouse cycle`. "
        "Set `SCOREHOUSE_CATALOG` to read a catalog elsewhere."
    )


def unreadable(error: Exception) -> None:
    st.error(
        f"The warehouse could not be read: {error}\n\n"
        "If the warehouse folder moved or the catalog's views changed, `uv run scorehouse init` rebuilds the "
        "catalog; this page picks the new one up by itself."
    )


def when(value: datetime | pd.Timestamp | None) -> str:
    """A UTC time to the minute, or a dash."""
    if value is None or pd.isna(value):
        return "—"
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def time_column(label: str) -> Any:
    """A table column of UTC times to the minute."""
    return st.column_config.DatetimeColumn(label, format="YYYY-MM-DD HH:mm", timezone="UTC")


def day_range(picked: object) -> tuple[date | None, date | None]:
    """The days a range date input holds: none, the first only (while picking), or both."""
    given = list(picked) if isinstance(picked, tuple | list) else [picked]
    days: list[date] = [d for d in given if isinstance(d, date)]
    return (days[0] if days else None), (days[1] if len(days) > 1 else None)


def within_days(rows: pd.DataFrame, column: str, first: date | None, last: date | None) -> pd.DataFrame:
    """The rows whose time in `column` falls on a UTC day from `first` to `last` (inclusive; None: unbounded)."""
    days = pd.to_datetime(rows[column], utc=True).dt.date
    keep = pd.Series(True, index=rows.index)
    if first is not None:
        keep &= days >= first
    if last is not None:
        keep &= days <= last
    return rows[keep]


def count(value: int) -> str:
    return f"{value:,}"


def plain(value: object) -> str:
    """A stored feature value as a person wrote it: a whole number without `.0` (numeric features are stored as
    floats, so an income of 10000 comes back as 10000.0), empty when missing."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def csv_bytes(rows: pd.DataFrame) -> bytes:
    """A table as a CSV file (UTF-8, a header, no index): what a download button hands over."""
    return rows.to_csv(index=False).encode()


def decimal(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.{digits}f}"


# Every ASCII punctuation character: CommonMark lets each be escaped with a backslash, and with all of them
# escaped no link, image, emphasis, HTML, autolink, Streamlit directive (`:red[...]`) or
# formula (`$`) can start inside a value.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
# What GitHub-flavoured markdown turns into a link by itself, even when every character is escaped: a
# scheme (`https://`, `mailto:`, `xmpp:`), `www.`, or an address with `@`. Such values are shown as code.
_LINKABLE = re.compile(r"(?i)(://|www\.|@|mailto:|xmpp:)")


def text(value: object) -> str:
    """A stored value (a reason, a label, a version) as markdown that shows exactly its characters.

    Everything a person can put into the warehouse (ids, file names, labels, reasons) goes through this
    or `code` before Streamlit renders it as markdown. Line breaks become spaces: a new line could start
    a heading or a list. A value holding something GFM would link by itself is shown as code instead.
    """
    shown = str(value)
    if _LINKABLE.search(shown):  # GFM links a bare URL or e-mail address after parsing, escaped or not
        return code(shown)
    return _PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", shown))


def code(value: object) -> str:
    """A stored identifier (a record id, a file name) as an inline code span that cannot be closed early:
    its fence is one backtick longer than the longest run of backticks inside."""
    shown = _LINE_BREAKS.sub("\u21b5", str(value)) or " "
    fence = "`" * (max((len(run) for run in re.findall(r"`+", shown)), default=0) + 1)
    pad = " " if shown[0] in "` " or shown[-1] in "` " else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def plain_number(value: str | None) -> str | None:
    """A number stored as text (a reason code's value) as a person writes it: `10000.0` as `10000`; other text
    as it is. Reason values of numeric features are text, and warehouses written before they were shortened hold
    `10000.0`."""
    if value is None or not _FLOAT_TEXT.fullmatch(value.strip()):
        return value
    return plain(float(value))


_FLOAT_TEXT = re.compile(r"[-+]?\d+\.0+")  # only a whole number written with a zero fraction is rewritten


# ------------------------------------------------------------------------------------ long text


def full_text(rows: pd.DataFrame, column: str, heading: Callable[[pd.Series], str], what: str) -> None:
    """Every value of a long text column whole, in an expander under its table: a table cell cuts text at the
    column's width. `heading` names a row (markdown, already escaped); the text itself is escaped here."""
    shown = rows[rows[column].notna() & (rows[column].astype(str).str.strip() != "")]
    if shown.empty:
        return
    with st.expander(f"{what} in full ({count(len(shown))})"):
        st.markdown("\n".join(f"- {heading(row)}: {text(row[column])}" for _, row in shown.iterrows()))


def long_text_column(label: str) -> Any:
    """A table column of sentences: wide, and saying where to read a cut one whole."""
    return st.column_config.TextColumn(
        label, width="large", help="Cut to the column's width: double-click a cell, or open the full text below"
    )


# ------------------------------------------------------------------------------------ Prefect runs

RUN_PATH = "/runs/flow-run/"


def flow_run_url(prefect_ui: str | None, run_id: object) -> str | None:
    """The Prefect UI's page of a flow run, or None when the UI's address or the run is unknown."""
    if prefect_ui is None or run_id is None or pd.isna(run_id) or not str(run_id).strip():  # type: ignore[call-overload]
        return None
    return f"{prefect_ui}{RUN_PATH}{quote(str(run_id).strip(), safe='')}"


def with_run_links(rows: pd.DataFrame, prefect_ui: str | None) -> pd.DataFrame:
    """The table with its `flow_run_id` as links to the runs when the Prefect UI is known (ids as they are else)."""
    if prefect_ui is None or "flow_run_id" not in rows:
        return rows
    links = pd.Series([flow_run_url(prefect_ui, run) for run in rows["flow_run_id"]], index=rows.index, dtype=object)
    return rows.assign(flow_run_id=links)


def run_column(prefect_ui: str | None) -> Any:
    """The table column of the Prefect flow run that wrote a row: a link to it when the UI's address is known."""
    if prefect_ui is None:
        return st.column_config.TextColumn(
            "Prefect run", help="The flow run's id. Set PREFECT_UI_URL (or PREFECT_API_URL) to get links to the runs."
        )
    return st.column_config.LinkColumn(
        "Prefect run", display_text=rf"{re.escape(RUN_PATH)}(.*)$", help="Opens the flow run in the Prefect UI"
    )


def run_sentence(prefect_ui: str | None, run_id: object) -> str:
    """ " by Prefect run [id](url)" (or the id alone when the UI is unknown), or nothing without a run."""
    if run_id is None or pd.isna(run_id) or not str(run_id).strip():  # type: ignore[call-overload]
        return ""
    url = flow_run_url(prefect_ui, run_id)
    return f" by Prefect run [{code(run_id)}]({url})" if url else f" by Prefect run {code(run_id)}"
