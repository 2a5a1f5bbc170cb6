"""Which keys a table with a key already holds, checked against one snapshot after another.

A writer of a keyed table (`records`: an id is stored once) checks each batch's keys against the snapshot it
will commit from. Looking them up in the whole snapshot reads every stored key; a file ingested in blocks
did that once per block, so its cost grew with the history times the blocks. `StoredKeys` looks up the keys
of a window of coming rows (the ids of the next blocks of a file) in one snapshot, then follows the table
from version to version: a version that only added files costs reading those files, a commit of its own
rows costs nothing, and a version that removed files (compaction, erasure) is looked up whole again. Rows
outside the window, or whose keys are not the window's, are looked up in the whole snapshot as without it,
so its answers are always those of the snapshot asked about.

Keys are handled as their positions in the window's dictionary (Arrow's `dictionary_encode`): a hash table
of a million ids is built once per window, not at every question.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from warehouse.store import FLOW_DUCKDB_CONFIG, Warehouse


class StoredKeys:
    """The keys of one keyed table among those of a window of rows (`expect`), at the version last asked about.

    Rows are numbered as the caller numbers them (a file's row numbers): `expect` names the first row of the
    window, `among` and `committed` the rows they are about.
    """

    def __init__(self, store: Warehouse, table: str) -> None:
        key = store.table(table).key
        if key is None:
            raise ValueError(f"{table} has no key: every row is new")
        self.store, self.table, self.key = store, table, key
        self._first = 0  # the row number of the window's first row
        self._window = pa.array([], pa.string())  # the window's keys, row by row
        self._codes = np.zeros(0, dtype=np.int64)  # each row's key as a position in `_keys` (-1: no key)
        self._keys = pa.array([], pa.string())  # the window's distinct keys
        self._held = np.zeros(0, dtype=bool)  # which of `_keys` the table holds at `_version`
        self._version: int | None = None
        self._files: frozenset[str] = frozenset()  # the snapshot's data files at `_version`

    def expect(self, keys: pa.Array | pa.ChunkedArray, first: int, version: int) -> None:
        """Look up the keys of the rows from `first` on in the snapshot at `version` now, so that checking
        them later reads only what changes."""
        window = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
        encoded = pc.dictionary_encode(window)
        self._first, self._window, self._keys = first, window, encoded.dictionary
        self._codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        self._look_up_whole(version)

    def among(self, keys: pa.Array | pa.ChunkedArray, first: int, version: int) -> set[str]:
        """Which of `keys` (of the rows from `first` on) the table holds at `version`."""
        rows = self._rows_of(keys, first)
        if rows is None or self._version is None or version < self._version:
            return set(held_keys(self.store.dataset(self.table, version), self.key, _distinct(keys)).to_pylist())
        self._advance(version)
        codes = self._codes[rows]
        found = codes[(codes >= 0) & self._held[np.clip(codes, 0, None)]]
        return set(self._keys.take(pa.array(np.unique(found))).to_pylist())

    def committed(self, rows: np.ndarray, version: int) -> None:
        """This writer's own commit of the rows numbered `rows` (inside the window) created `version`: when
        it directly follows the version last asked about, nothing else changed in between, and no file needs
        reading."""
        if self._version is None or version != self._version + 1:
            return
        positions = np.asarray(rows, dtype=np.int64) - self._first
        if len(positions) and (positions.min() < 0 or positions.max() >= len(self._codes)):
            return  # not the window's rows: the next question reads the version's new files
        codes = self._codes[positions]
        self._held[codes[codes >= 0]] = True
        self._version = version
        self._files = frozenset(self.store.files(self.table, version))

    def _rows_of(self, keys: pa.Array | pa.ChunkedArray, first: int) -> slice | None:
        """The window's positions of these rows, if the window holds them with these very keys."""
        start = first - self._first
        if start < 0 or start + len(keys) > len(self._window):
            return None
        mine = self._window.slice(start, len(keys))
        if not mine.equals(keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys):
            return None
        return slice(start, start + len(keys))

    def _look_up_whole(self, version: int) -> None:
        found = held_keys(self.store.dataset(self.table, version), self.key, self._keys)
        self._held = _mask(pc.is_in(self._keys, value_set=found))
        self._version = version
        self._files = frozenset(self.store.files(self.table, version))

    def _advance(self, version: int) -> None:
        if version == self._version:
            return
        files = frozenset(self.store.files(self.table, version))
        if self._files - files:  # rows may have gone (compaction rewrote them, an erasure deleted them)
            self._look_up_whole(version)
            return
        added = sorted(files - self._files)
        if added:
            found = held_keys(self.store.files_dataset(self.table, added), self.key, self._keys)
            self._held |= _mask(pc.is_in(self._keys, value_set=found))
        self._version, self._files = version, files


def held_keys(stored: ds.Dataset, key: str, wanted: pa.Array) -> pa.Array:
    """The values of `wanted` found in column `key` of `stored` (reading that column only)."""
    if not len(wanted):
        return pa.array([], pa.string())
    with duckdb.connect(config=FLOW_DUCKDB_CONFIG) as con:
        con.register("stored", stored)
        con.register("wanted", pa.table({key: wanted}))
        found = con.sql(f'SELECT DISTINCT "{key}" FROM stored SEMI JOIN wanted USING ("{key}")').to_arrow_table()
    return found.column(0).combine_chunks().cast(pa.string())


def _distinct(keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    unique = pc.unique(pc.drop_null(keys))
    return unique.combine_chunks() if isinstance(unique, pa.ChunkedArray) else unique


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.array(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)  # a writable copy
