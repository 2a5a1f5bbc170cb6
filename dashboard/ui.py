"""What the pages share: how times and numbers are written, and what to run when something is missing.

Every empty state names the missing thing and the command that produces it, never a traceback.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

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
