"""Model version files: written atomically with their sha256, loaded only after the hashes match.

joblib files are pickles, and unpickling runs code: nothing is unpickled before its bytes match the
hash recorded in the registry when the version was written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

import joblib

from pipeline.model import ScoringModel

EMBEDDING_FILE = "embedding.joblib"
CLASSIFIER_FILE = "classifier.joblib"
METADATA_FILE = "metadata.json"
FILES = (EMBEDDING_FILE, CLASSIFIER_FILE, METADATA_FILE)


class ArtifactError(RuntimeError):
    """A model version's files are missing, changed or unreadable; it must not be used."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


CLAIM_FILE = ".claim"


def claim_version(models_dir: Path, first: int, fingerprint: str) -> str:
    """Allocate the version number `v<n>` (n >= first, not registered yet) by creating its folder: `mkdir`
    succeeds for one process only, on a local or shared file system, so two trainings never get the same
    number. The folder says what it was claimed for and by which process. A training of the same data
    (the same `fingerprint`) on the same host takes over the claim of a process that is gone (a killed
    run's work, finished under its number) or of this process (a failed attempt tried again). Another live
    claimer, or one on another host, keeps its number."""
    models_dir.mkdir(parents=True, exist_ok=True)
    number = max(first, 1)
    while True:
        folder = models_dir / f"v{number}"
        try:
            folder.mkdir()
        except FileExistsError:
            if _abandoned(folder / CLAIM_FILE, fingerprint):
                _write_claim(folder, fingerprint)
                return folder.name
            number += 1
            continue
        _write_claim(folder, fingerprint)
        return folder.name


def release_version(models_dir: Path, version: str) -> None:
    """Empty an unregistered version's folder (a concurrent run registered the same work): its claim file
    stays, so the number is never given out again, and no model file lies around unregistered."""
    folder = models_dir / version
    for child in folder.iterdir() if folder.is_dir() else []:
        if child.name != CLAIM_FILE:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def _write_claim(folder: Path, fingerprint: str) -> None:
    (folder / CLAIM_FILE).write_text(
        json.dumps({"fingerprint": fingerprint, "host": socket.gethostname(), "pid": os.getpid()})
    )


def _abandoned(claim: Path, fingerprint: str) -> bool:
    """Whether `claim` is for `fingerprint` by a process of this host that no longer runs."""
    try:
        owner = json.loads(claim.read_text())
    except (OSError, ValueError):
        return False  # being written, or not a claim: leave it
    if owner.get("fingerprint") != fingerprint or owner.get("host") != socket.gethostname():
        return False
    pid = int(owner["pid"])
    return pid == os.getpid() or not _running(pid)  # this very process trying again, or a process gone


def _running(pid: int) -> bool:
    """Whether process `pid` runs (a killed process its parent has not reaped yet is a zombie: not running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def save_version(model: ScoringModel, folder: Path, metadata: dict[str, Any]) -> dict[str, str]:
    """Write the version's files into `folder` (empty, claimed by `claim_version`) and return their sha256s.

    Files go to a temporary sibling folder first, which is renamed into place: a killed save
    leaves no half-written version behind.
    """
    temporary = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"
    temporary.mkdir(parents=True)
    try:
        joblib.dump(model.embedding, temporary / EMBEDDING_FILE)
        joblib.dump(model.classifier, temporary / CLASSIFIER_FILE)
        hashes = {name: sha256_of(temporary / name) for name in (EMBEDDING_FILE, CLASSIFIER_FILE)}
        document = {**metadata, **_describe(model), "sha256": hashes}
        (temporary / METADATA_FILE).write_text(json.dumps(document, indent=2, sort_keys=True, default=str))
        hashes[METADATA_FILE] = sha256_of(temporary / METADATA_FILE)
        for name in FILES:
            with open(temporary / name, "rb") as handle:
                os.fsync(handle.fileno())
        claim = folder / CLAIM_FILE
        if claim.is_file():  # the claim goes on with the files: a killed run's work stays its to finish
            shutil.copy2(claim, temporary / CLAIM_FILE)
        if folder.exists():
            shutil.rmtree(folder)  # the claimed, empty folder (or what a killed save of this run left)
        os.replace(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return hashes


def _describe(model: ScoringModel) -> dict[str, Any]:
    """What scoring needs besides the fitted objects; kept as JSON so it is readable and hashed."""
    return {
        "version": model.version,
        "model_input": model.model_input,
        "threshold": model.threshold,
        "classes": list(model.classes),
        "feature_names": model.feature_names,
    }


def verify_version(folder: Path, expected: dict[str, str]) -> None:
    """Raise ArtifactError unless every file of the version matches the sha256 the registry recorded."""
    for name in FILES:
        path = folder / name
        if name not in expected:
            raise ArtifactError(f"the registry has no sha256 for {path}; retrain this version or promote another")
        if not path.is_file():
            raise ArtifactError(f"model file {path} is missing; restore it or promote another version")
        actual = sha256_of(path)
        if actual != expected[name]:
            raise ArtifactError(
                f"model file {path} does not match the registry (sha256 {actual[:12]}... != {expected[name][:12]}...): "
                "it changed after training. Refusing to load it; restore the file or promote another version"
            )


def load_version(folder: Path, expected: dict[str, str]) -> ScoringModel:
    """Load a version, only after `verify_version` passed."""
    verify_version(folder, expected)
    try:
        metadata = json.loads((folder / METADATA_FILE).read_text())
        embedding = joblib.load(folder / EMBEDDING_FILE)
        classifier = joblib.load(folder / CLASSIFIER_FILE)
    except Exception as error:  # verified files that still fail to load: different library versions
        raise ArtifactError(f"model files in {folder} could not be loaded: {error}") from error
    return ScoringModel(
        version=metadata["version"],
        embedding=embedding,
        classifier=classifier,
        model_input=metadata["model_input"],
        threshold=float(metadata["threshold"]),
        classes=(metadata["classes"][0], metadata["classes"][1]),
        feature_names=list(metadata["feature_names"]),
    )
