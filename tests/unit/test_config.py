"""The config file and its overrides: a valid file loads; a wrong one fails naming the field."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import ConfigError, load_settings
from tests.conftest import dump_toml, tiny_config_document, write_toml


def _write(tmp_path: Path, document: dict[str, Any], name: str = "scorehouse.toml") -> Path:
    return write_toml(tmp_path / name, document)


def _feature(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in document["dataset"]["features"] if f["name"] == name)


def test_valid_file_loads_with_the_contract_and_defaults(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, tiny_config_document()))

    assert settings.dataset.id_column == "id"
    assert settings.dataset.numeric == ["amount", "rate"]
    assert settings.dataset.categorical == ["colour"]
    assert settings.dataset.positive_class == "yes"
    assert settings.model.threshold == 0.4
    assert settings.model.embedding_size == 3
    assert settings.scoring.chunk_rows == 100_000  # default


def test_relative_paths_resolve_from_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write(tmp_path / "project", tiny_config_document())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    settings = load_settings(config)

    assert settings.base_dir == config.parent.resolve()
    assert settings.reference_path == config.parent.resolve() / "reference.csv"
    assert settings.warehouse_dir == config.parent.resolve() / "data" / "warehouse"
    assert settings.incoming_dir.is_relative_to(config.parent.resolve())


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    reference = tmp_path / "somewhere" / "ref.parquet"
    settings = load_settings(_write(tmp_path / "project", tiny_config_document(str(reference))))
    assert settings.reference_path == reference


def test_env_override_of_the_threshold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write(tmp_path, tiny_config_document())
    monkeypatch.setenv("SCOREHOUSE_MODEL__THRESHOLD", "0.7")

    settings = load_settings(config)

    assert settings.model.threshold == 0.7
    assert settings.model.embedding_size == 3  # the rest of the section still comes from the file


def test_env_override_of_chunk_rows_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = tiny_config_document()
    document["scoring"] = {"chunk_rows": 5}
    config = _write(tmp_path, document)
    monkeypatch.setenv("SCOREHOUSE_SCORING__CHUNK_ROWS", "7")

    assert load_settings(config).scoring.chunk_rows == 7


def test_a_wrong_env_override_names_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write(tmp_path, tiny_config_document())
    monkeypatch.setenv("SCOREHOUSE_MODEL__THRESHOLD", "3")

    with pytest.raises(ConfigError, match=r"model\.threshold"):
        load_settings(config)


def test_loading_leaves_the_config_variable_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write(tmp_path, tiny_config_document())
    load_settings(config)
    assert "SCOREHOUSE_CONFIG" not in os.environ
    monkeypatch.setenv("SCOREHOUSE_CONFIG", "/some/where.toml")
    load_settings(config)
    assert os.environ["SCOREHOUSE_CONFIG"] == "/some/where.toml"


def test_config_variable_is_used_when_no_path_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write(tmp_path, tiny_config_document())
    monkeypatch.setenv("SCOREHOUSE_CONFIG", str(config))
    assert load_settings().base_dir == tmp_path.resolve()


def _broken(mutate: Any) -> dict[str, Any]:
    document = copy.deepcopy(tiny_config_document())
    mutate(document)
    return document


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(lambda d: d["model"].update(threshold=3), [r"model\.threshold"], id="threshold-above-1"),
        pytest.param(lambda d: d["model"].update(threshold=0), [r"model\.threshold"], id="threshold-zero"),
        pytest.param(
            lambda d: _feature(d, "colour").update(min=0),
            [r"dataset\.features\.2", "'colour' is categorical", "min"],
            id="categorical-with-min",
        ),
        pytest.param(
            lambda d: _feature(d, "rate").update(allowed=["a"]),
            [r"dataset\.features\.1", "'rate' is numeric", "allowed"],
            id="numeric-with-allowed",
        ),
        pytest.param(
            lambda d: _feature(d, "amount").update(min=10, max=1),
            [r"dataset\.features\.0", "min 10", "above max 1"],
            id="min-above-max",
        ),
        pytest.param(
            lambda d: d["dataset"]["features"].append({"name": "rate", "kind": "numeric"}),
            [r"dataset", "features listed twice", "'rate'"],
            id="duplicated-feature",
        ),
        pytest.param(
            lambda d: d["dataset"]["features"].append({"name": "id", "kind": "categorical"}),
            [r"dataset", "'id'", "cannot also be a feature"],
            id="id-as-feature",
        ),
        pytest.param(lambda d: d["dataset"].update(classes=["no", "no"]), ["classes"], id="same-classes"),
        pytest.param(
            lambda d: d["dataset"].update(classes=["no", "yes", "maybe"]), [r"dataset\.classes"], id="three-classes"
        ),
        pytest.param(
            lambda d: _feature(d, "amount").update(kind="text"), [r"dataset\.features\.0\.kind"], id="unknown-kind"
        ),
        pytest.param(lambda d: d["model"].update(input="pixels"), [r"model\.input"], id="unknown-model-input"),
        pytest.param(lambda d: d["model"].update(embedding_size=0), [r"model\.embedding_size"], id="embedding-0"),
        pytest.param(lambda d: d.update(scoring={"chunk_rows": 0}), [r"scoring\.chunk_rows"], id="chunk-rows-0"),
        pytest.param(lambda d: d["model"].update(treshold=0.3), [r"model\.treshold", "Extra inputs"], id="typo"),
        pytest.param(lambda d: d.update(bogus={"x": 1}), [r"bogus", "Extra inputs"], id="unknown-section"),
        pytest.param(
            lambda d: _feature(d, "rate").update(maximum=3), [r"dataset\.features\.1\.maximum"], id="unknown-rule"
        ),
        pytest.param(lambda d: d.pop("training"), [r"training", "Field required"], id="missing-section"),
        pytest.param(lambda d: d["dataset"].update(features=[]), [r"dataset\.features"], id="no-features"),
    ],
)
def test_a_wrong_field_raises_config_error_naming_it(tmp_path: Path, mutate: Any, expected: list[str]) -> None:
    config = _write(tmp_path, _broken(mutate))

    with pytest.raises(ConfigError) as caught:
        load_settings(config)

    message = str(caught.value)
    assert str(config.resolve()) in message
    for pattern in expected:
        assert re.search(pattern, message), f"{pattern!r} not in:\n{message}"


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    def two_problems(d: dict[str, Any]) -> None:
        d["model"]["threshold"] = 3
        d["model"]["embedding_size"] = 0

    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, _broken(two_problems)))
    assert "2 problem(s)" in str(caught.value)
    assert "model.threshold" in str(caught.value)
    assert "model.embedding_size" in str(caught.value)


def test_missing_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as caught:
        load_settings(tmp_path / "nope.toml")
    assert "nope.toml" in str(caught.value)


def test_a_folder_instead_of_a_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path)


def test_a_file_that_is_not_toml_raises_config_error(tmp_path: Path) -> None:
    """A syntax error must fail like any other config error (a clear ConfigError), not with a parser traceback."""
    config = tmp_path / "scorehouse.toml"
    config.write_text(dump_toml(tiny_config_document()) + "\n[[[ not toml\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(config.resolve()) in str(caught.value)


@pytest.mark.parametrize(
    ("paths", "words"),
    [
        pytest.param({"incoming": "/etc"}, ["paths.incoming", "/etc", "system"], id="drop-folder-etc"),
        pytest.param({"feedback": "/usr/share/x"}, ["paths.feedback", "system"], id="inside-usr"),
        pytest.param({"processed_files": "/"}, ["paths.processed_files", "system"], id="root"),
        pytest.param({"rejected_files": "~"}, ["paths.rejected_files"], id="home-as-given"),
        pytest.param(
            {"incoming": "drop", "processed_files": "drop"},
            ["paths.incoming", "paths.processed_files", "same"],
            id="equal",
        ),
        pytest.param(
            {"incoming": "drop", "processed_files": "drop/done"},
            ["paths.processed_files is inside paths.incoming"],
            id="nested",
        ),
        pytest.param(
            {"warehouse": "data/incoming"}, ["paths.incoming", "paths.warehouse", "same"], id="warehouse-in-drop"
        ),
    ],
)
def test_unsafe_folders_are_refused_at_start(tmp_path: Path, paths: dict[str, str], words: list[str]) -> None:
    document = tiny_config_document()
    document["paths"] = {k: (str(Path(v).expanduser()) if v == "~" else v) for k, v in paths.items()}
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, document))
    for word in words:
        assert word in str(caught.value), str(caught.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinite_bounds_are_refused(tmp_path: Path, value: float) -> None:
    document = tiny_config_document()
    _feature(document, "rate")["min"] = value
    text = dump_toml(document).replace(repr(value), {"nan": "nan", "inf": "inf", "-inf": "-inf"}[repr(value)])
    config = tmp_path / "scorehouse.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=r"dataset\.features\.1\.min"):
        load_settings(config)


def test_a_nan_threshold_from_the_environment_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOREHOUSE_MODEL__THRESHOLD", "nan")
    with pytest.raises(ConfigError, match=r"model\.threshold"):
        load_settings(_write(tmp_path, tiny_config_document()))


def test_a_config_error_is_one_line(tmp_path: Path) -> None:
    document = tiny_config_document()
    document["model"].update(threshold=3, embedding_size=0)
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, document))
    assert "\n" not in str(caught.value)


def test_a_section_override_that_is_not_json_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCOREHOUSE_PATHS", "{oops")
    with pytest.raises(ConfigError, match="SCOREHOUSE_PATHS") as caught:
        load_settings(_write(tmp_path, tiny_config_document()))
    assert "JSON" in str(caught.value)
