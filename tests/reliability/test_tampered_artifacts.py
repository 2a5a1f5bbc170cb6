"""Tampered artifacts (invariant 8): a model file changed, truncated, replaced by a hostile pickle or missing,
and a registry row pointing to a file that is not there. Each is refused with a message naming the
file, nothing is unpickled (joblib.load is never called, a planted pickle never runs), and the
champion stays in place and keeps scoring once its files are whole again.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest

from flows.ingest import ingest
from flows.registry import commit_events
from flows.retrain import promote, retrain
from flows.runtime import utc_now
from flows.score import score
from flows.train import train
from pipeline.artifacts import CLASSIFIER_FILE, EMBEDDING_FILE, METADATA_FILE, ArtifactError
from tests.flows.conftest import Project, arrivals
from tests.reliability._projects import quick_project


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """v1 champion, v2 trained but not promoted (another threshold), and records waiting to be scored."""
    folder = tmp_path_factory.mktemp("tampered") / "project"
    project = quick_project(folder, chunk_rows=100)
    assert train(project.config) == "v1"
    # The same folders, another threshold: another fingerprint, a second version.
    other = quick_project(folder, chunk_rows=100, config_name="other.toml", model={"threshold": 0.2})
    assert train(other.config) == "v2"
    assert champion(project) == "v1"
    project.drop_csv(arrivals(40), "waiting.csv")
    ingest(project.config)
    return project


def champion(project: Project) -> str:
    return str(project.scalar("SELECT model_version FROM champion"))


def version_dir(project: Project, version: str) -> Path:
    """The version's folder: the registry holds it relative to the models root."""
    return project.model_folder(
        project.scalar("SELECT artifact_dir FROM models WHERE event = 'trained' AND model_version = ?", [version])
    )


@pytest.fixture(autouse=True)
def restored(registry: Project) -> Iterator[None]:
    """Every model file as trained, again after each test."""
    files = {p: p.read_bytes() for p in registry.settings.models_dir.rglob("*") if p.is_file()}
    yield
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file joblib unpickles in this process."""
    seen: list[str] = []
    real = joblib.load

    def recording(filename: object, *args: object, **kwargs: object) -> object:
        seen.append(str(filename))
        return real(filename, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(joblib, "load", recording)
    return seen


class _Planted:
    """Unpickling this creates a file: proof that the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _refused(flow_state: object, path: Path, words: str) -> str:
    assert flow_state.is_failed(), flow_state  # type: ignore[attr-defined]
    with pytest.raises(ArtifactError) as caught:
        flow_state.result()  # type: ignore[attr-defined]
    message = str(caught.value)
    assert str(path) in message and words in message, message
    return message


def _scores_again(project: Project, start: int) -> None:
    """The champion scores every record waiting, new ones included: it kept its place."""
    project.drop_csv(arrivals(15, start=start), f"more-{start}.csv")
    ingest(project.config)
    counts = project.counts()
    report = score(project.config)
    assert (report.model_version, report.scored) == ("v1", counts["records"] - counts["predictions"])
    assert project.counts()["predictions"] == counts["records"]


@pytest.mark.parametrize(
    ("name", "damage", "words"),
    [
        (CLASSIFIER_FILE, "flip", "does not match the registry"),
        (METADATA_FILE, "flip", "does not match the registry"),
        (EMBEDDING_FILE, "truncate", "does not match the registry"),
        (CLASSIFIER_FILE, "delete", "is missing"),
        (EMBEDDING_FILE, "hostile pickle", "does not match the registry"),
        (CLASSIFIER_FILE, "hostile pickle", "does not match the registry"),
    ],
)
def test_a_damaged_champion_is_refused_and_never_unpickled(
    registry: Project, loads: list[str], tmp_path: Path, name: str, damage: str, words: str
) -> None:
    before = registry.counts()
    path = version_dir(registry, "v1") / name
    marker = tmp_path / "the-pickle-ran"
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "delete":
        path.unlink()
    else:
        path.write_bytes(pickle.dumps(_Planted(marker)))

    _refused(score(registry.config, return_state=True), path, words)
    _refused(retrain(registry.config, force=True, return_state=True), path, words)

    assert loads == [], "nothing may be unpickled before its sha256 matches"
    assert not marker.exists(), "a planted pickle ran"
    assert registry.counts() == before  # nothing scored, nothing trained, nothing decided
    assert champion(registry) == "v1"  # the champion stays


def test_the_champion_scores_again_once_its_files_are_restored(registry: Project) -> None:
    path = version_dir(registry, "v1") / CLASSIFIER_FILE
    original = path.read_bytes()
    path.write_bytes(original + b"appended")
    _refused(score(registry.config, return_state=True), path, "does not match the registry")
    path.write_bytes(original)
    _scores_again(registry, start=4400)


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_promoting_a_damaged_version_is_refused_and_the_champion_keeps_scoring(
    registry: Project, loads: list[str], damage: str
) -> None:
    path = version_dir(registry, "v2") / CLASSIFIER_FILE
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.unlink()
    models = registry.counts()["models"]

    state = promote("v2", "try the damaged one", "test", registry.config, return_state=True)

    _refused(state, path, "does not match the registry" if damage == "flip" else "is missing")
    assert loads == []
    assert registry.counts()["models"] == models and champion(registry) == "v1"
    _scores_again(registry, start={"flip": 4500, "delete": 4550}[damage])


def test_a_registry_row_pointing_to_a_missing_folder_cannot_be_promoted(registry: Project, loads: list[str]) -> None:
    missing = registry.folder / "artifacts" / "models" / "v9-never-saved"
    hashes = {name: "0" * 64 for name in (EMBEDDING_FILE, CLASSIFIER_FILE, METADATA_FILE)}
    row = {
        "model_version": "v9",
        "event": "trained",
        "event_at": utc_now(),
        "reason": "a row written by hand",
        "actor": "test",
        "artifact_dir": str(missing),
        "artifact_sha256": json.dumps(hashes),
        "fingerprint": "by-hand",
    }
    commit_events(registry.store(), [row], "by-hand-v9")

    state = promote("v9", "promote a ghost", "test", registry.config, return_state=True)

    _refused(state, missing / EMBEDDING_FILE, "is missing")
    assert loads == [] and champion(registry) == "v1"
    _scores_again(registry, start=4600)
