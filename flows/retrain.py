"""`retrain`: train a challenger on the reference and labelled production data; promote it only if it wins."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.deployed import add_to_run_name
from flows.registry import (
    ChallengerRows,
    Event,
    commit_events,
    commit_reference_set,
    drop_training_rows,
    register_version,
    withdraw_version,
)
from flows.runtime import artifact_path, load_champion, open_store, publish, run_name, settings_from, utc_now
from pipeline.artifacts import claim_version, load_version, verify_version
from pipeline.config import Settings
from pipeline.metrics import METRICS
from pipeline.model import ScoringModel
from pipeline.retraining import (
    Comparison,
    RetrainData,
    compare,
    own_rows,
    promotion_rule,
    rebuild_training_rows,
    split_for_retraining,
    train_challenger,
)
from pipeline.training import reference_set
from warehouse.queries import last_compared_until
from warehouse.registry import (
    RegisteredVersion,
    champion,
    highest_version,
    previous_champion,
    reference_batch,
    registered,
    version_with_fingerprint,
)
from warehouse.store import Conflict, Warehouse, batch_id


@dataclass(frozen=True)
class RetrainDecision:
    champion: str
    challenger: str | None  # None when there was nothing to train on
    promoted: bool
    reason: str


@task(cache_policy=NO_CACHE)
def load_training_data(store: Warehouse, settings: Settings, champion_version: str) -> RetrainData:
    """The champion's reference set plus the labelled production rows: training rows and fresh comparison rows."""
    features = ", ".join(f'"{name}"' for name in settings.dataset.feature_names)
    with store.connect() as con:
        reference = con.execute(
            "SELECT * FROM reference WHERE model_version = ? ORDER BY record_id", [champion_version]
        ).df()
        production = con.execute(
            f"SELECT record_id, {features}, target, labelled_at FROM labelled_predictions ORDER BY record_id"
        ).df()
        until = last_compared_until(con)
    return split_for_retraining(
        reference,
        production,
        settings.dataset,
        settings.retrain.production_holdout_fraction,
        None if until is None else pd.Timestamp(until),
    )


def fingerprint(settings: Settings, champion_version: str, data: RetrainData) -> str:
    """What a challenger is trained from: the champion, the exact rows and labels, the settings."""
    target = settings.dataset.target_column
    rows = pd.util.hash_pandas_object(data.train[["record_id", target]], index=False).sum()
    held = pd.util.hash_pandas_object(data.holdout[["record_id", target]], index=False).sum()
    parts = [
        champion_version,
        str(rows),
        str(held),
        settings.model.model_dump_json(),
        settings.retrain.model_dump_json(),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


@task(cache_policy=NO_CACHE)
def challenge(
    data: RetrainData, settings: Settings, champion_model: ScoringModel, version: str
) -> tuple[ScoringModel, Comparison]:
    challenger = train_challenger(data, settings, champion_model, version=version)
    comparison = compare(champion_model, challenger, data.holdout, settings.dataset, promotion_rule(settings))
    return challenger, comparison


def decision_columns(comparison: Comparison, data: RetrainData) -> dict[str, object]:
    """The paired test's numbers, for the decision row of `models`."""
    test = comparison.test
    return {
        "decision_metric": test.metric,
        "decision_gain": test.gain,
        "decision_low": test.gain_low,
        "decision_high": test.gain_high,
        "decision_p_value": test.p_value,
        "guard_metric": test.guard_metric,
        "guard_gain": test.guard_gain,
        "guard_p_value": test.guard_p_value,
        "decision_rows": test.rows,
        "decision_positives": test.positives,
        "compared_until": None if data.compared_until is None else data.compared_until.to_pydatetime(),
    }


def _summary(comparison: Comparison, champion_version: str, challenger_version: str, trigger: str) -> str:
    header = "| model | " + " | ".join(METRICS) + " |"

    def row(name: str, metrics: dict[str, float]) -> str:
        return f"| {name} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |"

    return "\n".join(
        [
            f"# Retrain: {challenger_version} {'promoted' if comparison.promote else 'rejected'}",
            f"Trigger: {trigger}",
            "",
            comparison.reason,
            "",
            header,
            "|---|" + "---|" * len(METRICS),
            row(f"champion {champion_version}", comparison.champion),
            row(f"challenger {challenger_version}", comparison.challenger),
        ]
    )


def _nothing_to_do(reason: str, trigger: str, champion_version: str) -> None:
    """A retrain that trained nothing still says why, on its run page and in its name."""
    create_markdown_artifact(
        key="retrain-decision",
        markdown=f"# Retrain: nothing trained\nTrigger: {trigger}\n\n{reason}\n\nChampion: {champion_version}.",
        description="retrain: nothing trained",
    )
    add_to_run_name("nothing to do")


@flow(name="retrain", flow_run_name=run_name("retrain"))
def retrain(config: str | None = None, trigger: str = "by hand", force: bool = False) -> RetrainDecision:
    """Train a challenger, compare it with the champion on the same held-out rows, promote only a winner.

    Without `force`, a retrain needs new labelled production rows. The same champion and the same
    labelled rows never train a second challenger: the decision already taken is returned.
    """
    logger = get_run_logger()
    settings = settings_from(config)
    store = open_store(settings)
    decided_at = store.version("models")  # the registry the champion below is read from
    champion_model = load_champion(store, settings)
    data = load_training_data(store, settings, champion_model.version)
    if (data.new_rows == 0 and not force) or data.holdout.empty:
        reason = (
            "no labelled production rows beyond the champion's training data yet; nothing to retrain on"
            if data.new_rows == 0
            else "no fresh labelled rows (labelled after the last decision's rows) to compare on; wait for labels"
        )
        logger.info(reason)
        _nothing_to_do(reason, trigger, champion_model.version)
        return RetrainDecision(champion=champion_model.version, challenger=None, promoted=False, reason=reason)
    print_ = fingerprint(settings, champion_model.version, data)
    with store.connect() as con:
        existing = version_with_fingerprint(con, print_)
        first = highest_version(con) + 1
    if existing:
        reason = f"{existing} was already trained from this champion and these labels; nothing to do"
        logger.info(reason)
        _nothing_to_do(reason, trigger, champion_model.version)
        return RetrainDecision(champion=champion_model.version, challenger=existing, promoted=False, reason=reason)

    version = claim_version(settings.models_dir, first, print_)
    challenger, comparison = challenge(data, settings, champion_model, version)
    details = {
        "trigger": trigger,
        "strategy": settings.retrain.strategy,
        "comparison": {
            "metric": comparison.metric,
            "margin": comparison.margin,
            "holdout_rows": comparison.holdout_rows,
            "test": comparison.test.as_dict(),
            "champion": {"version": champion_model.version, **comparison.champion},
            "challenger": {"version": version, **comparison.challenger},
        },
    }
    trained = Event(version, "trained", f"challenger to {champion_model.version}; trigger: {trigger}")
    if comparison.promote:
        events = [
            trained,
            Event(version, "promoted", comparison.reason),
            Event(champion_model.version, "retired", f"replaced by {version}: {comparison.reason}"),
        ]
    else:
        events = [trained, Event(version, "rejected", comparison.reason)]
    register = functools.partial(
        register_version,
        store,
        settings,
        challenger,
        train=data.train,
        holdout=data.holdout,
        metrics=comparison.challenger,
        details=details,
        fingerprint=print_,
        actor=f"retrain ({trigger})",
        decision=decision_columns(comparison, data),
        decided_at=decided_at,
        challenger=ChallengerRows(champion_model.version, own_rows(data, settings.dataset)),
    )
    try:
        register(events=events)
    except Conflict:
        with store.connect() as con:
            existing = version_with_fingerprint(con, print_)
        if existing:
            withdraw_version(store, settings, version, print_)
            reason = f"{existing} was trained from this champion and these labels by a concurrent run; {version} unused"
            logger.info(reason)
            _nothing_to_do(reason, trigger, champion_model.version)
            return RetrainDecision(champion=champion_model.version, challenger=existing, promoted=False, reason=reason)
        # Another run promoted a model meanwhile: this challenger was compared with a champion that is no
        # longer in production, so it is not promoted.
        raced = f"{comparison.reason}; not promoted: the champion changed while it was compared, retrain again"
        comparison = dataclasses.replace(comparison, promote=False, reason=raced)
        register(events=[trained, Event(version, "rejected", raced)])
        drop_training_rows(store, "reference", version, print_)  # written for the promotion that lost
    publish(store)
    (logger.info if comparison.promote else logger.warning)("%s", comparison.reason)
    create_markdown_artifact(
        key="retrain-decision",
        markdown=_summary(comparison, champion_model.version, version, trigger),
        description=f"retrain {version}",
    )
    add_to_run_name(f"{version} {'promoted' if comparison.promote else 'rejected'}")
    return RetrainDecision(
        champion=version if comparison.promote else champion_model.version,
        challenger=version,
        promoted=comparison.promote,
        reason=comparison.reason,
    )


@flow(name="promote", flow_run_name=run_name("promote"))
def promote(version: str, reason: str, actor: str, config: str | None = None) -> str:
    """Make `version` the champion by hand (its files must match the registry); the old one is retired."""
    settings = settings_from(config)
    store = open_store(settings)
    decided_at = store.version("models")
    with store.connect() as con:
        target = registered(con, version)
        current = champion(con)
    if target is None:
        raise ValueError(f"no model version {version!r} in the registry; `scorehouse status` lists them")
    if current is not None and current.version == version:
        raise ValueError(f"{version} is already the champion")
    verify_version(artifact_path(settings, target.artifact_dir), target.sha256)
    ensure_reference_set(store, settings, target)
    now = utc_now()
    rows = [{"model_version": version, "event": "promoted", "event_at": now, "reason": reason, "actor": actor}]
    if current is not None:
        rows.append(
            {
                "model_version": current.version,
                "event": "retired",
                "event_at": now,
                "reason": f"replaced by {version} by hand: {reason}",
                "actor": actor,
            }
        )
    try:
        commit_events(store, rows, batch_id("promote", version, now.isoformat()), read_version=decided_at)
    except Conflict:
        raise ValueError(
            f"another promotion landed while {version} was being promoted; check `champion_history`"
        ) from None
    publish(store)
    get_run_logger().info("%s promoted by %s: %s", version, actor, reason)
    return version


def ensure_reference_set(store: Warehouse, settings: Settings, target: RegisteredVersion) -> None:
    """Give a version about to be champion its reference set (what monitoring and retraining read): a
    rejected challenger stored only its own rows, so its set is built again from them and its champion's
    reference set, with its own model. Rows erased since are left out."""
    version, dataset = target.version, settings.dataset
    features = ", ".join(f'r."{name}"' for name in dataset.feature_names)
    with store.connect() as con:
        if con.execute("SELECT count(*) FROM reference WHERE model_version = ?", [version]).fetchone() != (0,):
            return
        own = con.execute(
            f"SELECT c.record_id, c.split, c.target, c.champion_version, {features} FROM challenger_rows c "
            "JOIN records r USING (record_id) WHERE c.model_version = ? ORDER BY c.record_id",
            [version],
        ).df()
        if own.empty:
            raise ValueError(
                f"{version} has no reference set and no training rows left to build one from, so it could not be "
                "monitored; promote another version or retrain"
            )
        parent = str(own["champion_version"].iloc[0])
        champion_reference = con.execute(
            "SELECT * FROM reference WHERE model_version = ? ORDER BY record_id", [parent]
        ).df()
    if champion_reference.empty:
        raise ValueError(
            f"{version} trained on {parent}'s reference set, which is not in the warehouse, so its own cannot be "
            "built; promote another version or retrain"
        )
    train, holdout = rebuild_training_rows(champion_reference, own, dataset)
    model = load_version(artifact_path(settings, target.artifact_dir), target.sha256)
    reference = reference_set(model, train, holdout, dataset)
    commit_reference_set(store, version, reference_batch(version, target.fingerprint), reference)


def rollback(reason: str, actor: str, config: str | None = None) -> str:
    """Promote the version that was champion before the current one."""
    store = open_store(settings_from(config))
    with store.connect() as con:
        previous = previous_champion(con)
    if previous is None:
        raise ValueError("there is no earlier champion to roll back to: `champion_history` has one entry")
    return promote(previous, f"rollback: {reason}", actor, config)
