"""Reading the model registry (the `models` table): which versions exist and which one is champion."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse.store import batch_id


@dataclass(frozen=True, kw_only=True)
class RegisteredVersion:
    version: str
    artifact_dir: Path
    sha256: dict[str, str]
    fingerprint: str


def _version(row: tuple[str, str, str, str]) -> RegisteredVersion:
    version, artifact_dir, sha256, fingerprint = row
    return RegisteredVersion(
        version=version, artifact_dir=Path(artifact_dir), sha256=json.loads(sha256), fingerprint=fingerprint
    )


_TRAINED = "SELECT model_version, artifact_dir, artifact_sha256, fingerprint FROM models WHERE event = 'trained'"


def champion(con: duckdb.DuckDBPyConnection) -> RegisteredVersion | None:
    """The version promoted last, or None before the first training."""
    row = con.execute("SELECT model_version, artifact_dir, artifact_sha256, fingerprint FROM champion").fetchone()
    return _version(row) if row else None


def version_with_fingerprint(con: duckdb.DuckDBPyConnection, fingerprint: str) -> str | None:
    row = con.execute(f"{_TRAINED} AND fingerprint = ?", [fingerprint]).fetchone()
    return str(row[0]) if row else None


def highest_version(con: duckdb.DuckDBPyConnection) -> int:
    """The highest version number registered (0 before the first training)."""
    row = con.execute(
        "SELECT coalesce(max(TRY_CAST(substr(model_version, 2) AS INTEGER)), 0) FROM models WHERE event = 'trained'"
    ).fetchone()
    return int(row[0]) if row else 0


def reference_batch(version: str, fingerprint: str) -> str:
    """The batch id of a version's reference set."""
    return batch_id("reference", version, fingerprint)


def registered(con: duckdb.DuckDBPyConnection, version: str) -> RegisteredVersion | None:
    row = con.execute(f"{_TRAINED} AND model_version = ?", [version]).fetchone()
    return _version(row) if row else None


def registered_versions(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every trained version, in the order of their numbers."""
    rows = con.execute(
        "SELECT DISTINCT model_version, TRY_CAST(substr(model_version, 2) AS INTEGER) AS n FROM models "
        "WHERE event = 'trained' ORDER BY n, model_version"
    ).fetchall()
    return [str(row[0]) for row in rows]


def previous_champion(con: duckdb.DuckDBPyConnection) -> str | None:
    """The version that was champion before the current one (what a rollback returns to)."""
    row = con.execute(
        """
        SELECT model_version FROM champion_history
        WHERE champion_until IS NOT NULL
          AND model_version <> (SELECT model_version FROM champion_history WHERE champion_until IS NULL)
        ORDER BY champion_until DESC LIMIT 1
        """
    ).fetchone()
    return str(row[0]) if row else None


def new_labels_since_training(con: duckdb.DuckDBPyConnection) -> int:
    """Labels received since the latest version was trained (the counter of the every-k-labels trigger)."""
    row = con.execute(
        """
        SELECT count(*) FROM feedback_current
        WHERE received_at > (
            SELECT coalesce(max(event_at), TIMESTAMPTZ '1970-01-01') FROM models WHERE event = 'trained'
        )
        """
    ).fetchone()
    return int(row[0]) if row else 0
