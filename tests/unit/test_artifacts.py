"""Model version files: saved with their sha256, never unpickled unless the bytes match the registry."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

import pipeline.artifacts as artifacts
from pipeline.artifacts import (
    CLASSIFIER_FILE,
    EMBEDDING_FILE,
    FILES,
    METADATA_FILE,
    ArtifactError,
    load_version,
    save_version,
    sha256_of,
)
from pipeline.model import ScoringModel


@pytest.fixture
def saved(tmp_path: Path, fitted: ScoringModel) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "models" / "v1"
    hashes = save_version(fitted, folder, {"fingerprint": "abc", "train_rows": 300})
    return folder, hashes


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        pytest.fail("joblib.load was called on a file that does not match the registry")

    monkeypatch.setattr(joblib, "load", forbidden)
    monkeypatch.setattr(artifacts.joblib, "load", forbidden)


def test_save_then_load_gives_the_same_model(
    saved: tuple[Path, dict[str, str]], fitted: ScoringModel, synthetic: pd.DataFrame
) -> None:
    folder, hashes = saved
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    assert set(hashes) == set(FILES)
    assert all(hashes[name] == sha256_of(folder / name) for name in FILES)
    assert not list(folder.parent.glob(".*tmp"))  # the temporary folder is gone

    loaded = load_version(folder, hashes)

    assert loaded.version == "v1"
    assert loaded.model_input == fitted.model_input
    assert loaded.threshold == fitted.threshold
    assert loaded.classes == fitted.classes
    assert loaded.feature_names == fitted.feature_names
    for a, b in zip(loaded.score(synthetic), fitted.score(synthetic), strict=True):
        assert np.array_equal(a, b)


def test_metadata_is_readable_json_with_the_hashes(saved: tuple[Path, dict[str, str]]) -> None:
    folder, hashes = saved
    document = json.loads((folder / METADATA_FILE).read_text())
    assert document["fingerprint"] == "abc"
    assert document["version"] == "v1"
    assert document["sha256"] == {EMBEDDING_FILE: hashes[EMBEDDING_FILE], CLASSIFIER_FILE: hashes[CLASSIFIER_FILE]}


@pytest.mark.parametrize("name", FILES)
def test_a_changed_byte_is_refused_naming_the_file_before_unpickling(
    saved: tuple[Path, dict[str, str]], name: str, no_unpickling: None
) -> None:
    folder, hashes = saved
    path = folder / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(ArtifactError) as caught:
        load_version(folder, hashes)
    message = str(caught.value)
    assert str(path) in message
    assert "does not match the registry" in message


@pytest.mark.parametrize("name", FILES)
def test_a_missing_file_is_refused(saved: tuple[Path, dict[str, str]], name: str, no_unpickling: None) -> None:
    folder, hashes = saved
    (folder / name).unlink()
    with pytest.raises(ArtifactError, match="missing") as caught:
        load_version(folder, hashes)
    assert name in str(caught.value)


def test_a_hash_missing_from_the_registry_is_refused(saved: tuple[Path, dict[str, str]], no_unpickling: None) -> None:
    folder, hashes = saved
    partial = {k: v for k, v in hashes.items() if k != CLASSIFIER_FILE}
    with pytest.raises(ArtifactError, match="no sha256") as caught:
        load_version(folder, partial)
    assert CLASSIFIER_FILE in str(caught.value)


def test_a_truncated_joblib_file_is_refused(saved: tuple[Path, dict[str, str]], no_unpickling: None) -> None:
    folder, hashes = saved
    path = folder / CLASSIFIER_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="does not match the registry") as caught:
        load_version(folder, hashes)
    assert CLASSIFIER_FILE in str(caught.value)


def test_a_truncated_joblib_file_whose_hash_was_registered_fails_as_artifact_error(
    saved: tuple[Path, dict[str, str]],
) -> None:
    """Bytes that match the registry but cannot be loaded (a bad save, another library) still give ArtifactError."""
    folder, hashes = saved
    path = folder / EMBEDDING_FILE
    path.write_bytes(path.read_bytes()[:100])
    registered = {**hashes, EMBEDDING_FILE: sha256_of(path)}
    with pytest.raises(ArtifactError, match="could not be loaded") as caught:
        load_version(folder, registered)
    assert str(folder) in str(caught.value)


def test_saving_over_an_unregistered_leftover_folder_replaces_it(tmp_path: Path, fitted: ScoringModel) -> None:
    folder = tmp_path / "v1"
    folder.mkdir()
    (folder / "junk.txt").write_text("from a killed save")
    hashes = save_version(fitted, folder, {})
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    load_version(folder, hashes)
