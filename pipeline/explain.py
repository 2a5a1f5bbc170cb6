"""Why a record got its score: per-feature contributions (TreeSHAP) on the dataset's original features.

XGBoost computes the contributions of the classifier's input columns natively, in margin (log-odds)
units: they and the base value sum to the record's margin. Scorehouse explains in terms of the features
of the dataset contract instead, so the classifier's columns are mapped back:

- a scaled numeric column is its feature;
- the one-hot columns of a categorical feature are summed into that feature;
- a PCA component (model input `embedding` or `both`) is split over the preprocessed columns that
  moved the record along it (see `chain_through_pca`), then summed as above.

Every step is a sum or an exact split, so contributions + base value = margin still holds. Reason codes
are the features that raised the margin most (towards the positive class).

Cost. XGBoost's own TreeSHAP loop took about 38 times as long as scoring the same chunk (approximate: 8
times). For models of small trees (the repo config's: 400 trees of depth 2) the contributions are read
from per-tree decision tables instead (`pipeline/treeshap.py`), at about twice the cost of `predict`;
for `features` models the tables add straight into the original features. `Explainer` prepares the
tables once per model; `explain` and `score_and_explain` are for one-off calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from xgboost import DMatrix, XGBClassifier

from pipeline import treeshap
from pipeline.model import ScoringModel, classifier_input

__all__ = [
    "Explainer",
    "Explanations",
    "Reason",
    "chain_through_pca",
    "explain",
    "feature_origins",
    "global_importance",
    "no_explanations",
    "reason_text",
    "score_and_explain",
    "to_arrow",
    "tree_contributions",
]

# The type of one reason code in Arrow (the predictions table's `reasons` items).
REASON_TYPE = pa.struct(
    [pa.field("feature", pa.string()), pa.field("contribution", pa.float64()), pa.field("value", pa.string())]
)
EXPLANATION_TYPES = {
    "base_value": pa.float64(),
    "contributions": pa.list_(pa.float32()),
    "reasons": pa.list_(REASON_TYPE),
}


@dataclass(frozen=True)
class Reason:
    """One reason code: a feature that raised the score, by how much (margin units), and its value."""

    feature: str
    contribution: float
    value: str | None  # the record's value as text; None when the record has no value


@dataclass(frozen=True)
class Explanations:
    """The explanation of each row of a chunk, aligned with the chunk's rows.

    `contributions[i].sum() + base_value` is row i's margin (log-odds of the positive class).
    Reason slots are filled left to right with the row's largest positive contributions, largest first;
    a row with fewer than `top_k` positive contributions leaves the remaining slots empty (feature -1,
    contribution NaN, value None): a feature that lowered the risk is never given as a reason for it.
    """

    feature_names: list[str]
    base_value: float  # the booster's expected margin, the same for every row
    contributions: np.ndarray  # (rows, features) float64, margin units, in `feature_names` order
    reason_features: np.ndarray  # (rows, top_k) int32 index into `feature_names`; -1 for an empty slot
    reason_contributions: np.ndarray  # (rows, top_k) float64; NaN for an empty slot
    # The record's value (as text; null when missing) of each filled slot, rows in order, slots left to right:
    # Arrow, not Python strings (building a million Python strings cost as much as the contributions).
    reason_values: pa.StringArray

    def __len__(self) -> int:
        return int(self.contributions.shape[0])

    @property
    def top_k(self) -> int:
        return int(self.reason_features.shape[1])

    def reasons(self, row: int) -> list[Reason]:
        """Row `row`'s reason codes, largest contribution first."""
        first = int((self.reason_features[:row] >= 0).sum())
        return [
            Reason(
                self.feature_names[index],
                float(self.reason_contributions[row, slot]),
                self.reason_values[first + slot].as_py(),
            )
            for slot, index in enumerate(self.reason_features[row])
            if index >= 0
        ]


def reason_text(reason: Reason, rank: int = 0) -> str:
    """A reason code in words, e.g. "int_rate = 24.1 raised the risk most" for the first (rank 0)."""
    value = reason.value if reason.value is not None else "missing"
    effect = "raised the risk most" if rank == 0 else "raised the risk"
    return f"{reason.feature} = {value} {effect}"


# ------------------------------------------------------------------------------------------ explain


@dataclass(frozen=True)
class Explainer:
    """What explaining a model's rows needs, prepared once per model: the decision tables of its trees
    (None when they are too large to tabulate: XGBoost's own loop then) and the preprocessed columns'
    features. Use one per scoring run, not one per chunk (preparing costs about half a second)."""

    model: ScoringModel
    top_k: int
    approximate: bool
    origins: np.ndarray  # for each preprocessed column, the index of its feature
    tables: treeshap.TreeTables | None  # adding into the original features when the model input is `features`

    @classmethod
    def of(cls, model: ScoringModel, *, top_k: int = 4, approximate: bool = False) -> Explainer:
        _check_top_k(top_k)
        origins = feature_origins(model.embedding.preprocess, model.feature_names)
        tables = treeshap.compile_tables(model.classifier, approximate=approximate)
        if tables is not None and model.model_input == "features":
            tables = treeshap.regrouped(tables, origins, len(model.feature_names))
        return cls(model=model, top_k=top_k, approximate=approximate, origins=origins, tables=tables)

    def explain(self, frame: pd.DataFrame) -> Explanations:
        """Contributions of each original feature to each row's margin, and the top reason codes."""
        features = frame[self.model.feature_names]
        if features.empty:  # the preprocessing refuses zero rows
            return _no_rows(self.model, self.top_k, self.approximate)
        x, _ = classifier_input(self.model.embedding, features, self.model.model_input)
        return self.explain_input(features, x)

    def score_and_explain(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, Explanations]:
        """`model.score(frame)` and `explain(frame)` with the preprocessing done once.

        The scores are the classifier's own probabilities, bit for bit as `ScoringModel.score` gives them.
        The logistic of the contributions' sum would save that prediction but differs from it by up to
        ~1e-7, so a re-scored record would change its score.
        """
        model = self.model
        features = frame[model.feature_names]
        x, vectors = classifier_input(model.embedding, features, model.model_input)
        scores = model.classifier.predict_proba(x)[:, 1].astype(np.float64)
        labels = np.where(scores >= model.threshold, model.classes[1], model.classes[0])
        return scores, labels, vectors, self.explain_input(features, x)

    def explain_input(self, features: pd.DataFrame, x: np.ndarray) -> Explanations:
        """Explanations of rows whose classifier input is `x` (`features` are the same rows, as they came)."""
        model = self.model
        if self.tables is not None and model.model_input == "features":
            raw = treeshap.contributions(self.tables, x)  # already summed into the features
            contributions = raw[:, :-1]
        else:
            raw = (
                treeshap.contributions(self.tables, x)
                if self.tables is not None
                else tree_contributions(model.classifier, x, approximate=self.approximate)
            )
            per_column = _preprocessed_contributions(model, features, x, raw[:, :-1])
            contributions = _sum_by_origin(per_column, self.origins, len(model.feature_names))
        reason_features, reason_contributions = _top_reasons(contributions, self.top_k)
        return Explanations(
            feature_names=list(model.feature_names),
            base_value=float(raw[0, -1]),  # the bias column, the same on every row
            contributions=contributions,
            reason_features=reason_features,
            reason_contributions=reason_contributions,
            reason_values=_reason_values(features, reason_features),
        )


def explain(model: ScoringModel, frame: pd.DataFrame, *, top_k: int = 4, approximate: bool = False) -> Explanations:
    """Contributions of each original feature to each row's margin, and the top `top_k` reason codes.

    `approximate` uses approximate contributions (Saabas: the path of the record only), which are faster
    to compute with XGBoost's own loop and still add up to the margin, but are not Shapley values.
    Memory is a few arrays of the chunk's size: call it on a chunk, not on a whole table.
    """
    return Explainer.of(model, top_k=top_k, approximate=approximate).explain(frame)


def score_and_explain(
    model: ScoringModel, frame: pd.DataFrame, *, top_k: int = 4, approximate: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Explanations]:
    """`model.score(frame)` and `explain(model, frame)` with the preprocessing done once."""
    return Explainer.of(model, top_k=top_k, approximate=approximate).score_and_explain(frame)


def _check_top_k(top_k: int) -> None:
    if top_k < 0:
        raise ValueError(f"top_k must be 0 or more, not {top_k}")


def tree_contributions(classifier: XGBClassifier, x: np.ndarray, *, approximate: bool = False) -> np.ndarray:
    """XGBoost's own contribution of each input column, plus the bias as the last column (float32): the
    reference the decision tables are tested against, and what models too deep to tabulate use."""
    matrix = DMatrix(x, missing=classifier.missing, nthread=classifier.n_jobs)
    return np.asarray(
        classifier.get_booster().predict(matrix, pred_contribs=True, approx_contribs=approximate),
        dtype=np.float32,
    )


def _no_rows(model: ScoringModel, top_k: int, approximate: bool) -> Explanations:
    """Explanations of zero rows; the base value from the booster with one all-missing row."""
    width = model.classifier.get_booster().num_features()
    raw = tree_contributions(model.classifier, np.full((1, width), np.nan, np.float32), approximate=approximate)
    count = len(model.feature_names)
    return Explanations(
        feature_names=list(model.feature_names),
        base_value=float(raw[0, -1]),
        contributions=np.zeros((0, count)),
        reason_features=np.zeros((0, top_k), dtype=np.int32),
        reason_contributions=np.zeros((0, top_k)),
        reason_values=pa.array([], pa.string()),
    )


def _preprocessed_contributions(
    model: ScoringModel, features: pd.DataFrame, x: np.ndarray, raw: np.ndarray
) -> np.ndarray:
    """The classifier columns' contributions as contributions of the preprocessed columns (rows × columns)."""
    pca = model.embedding.pca
    if model.model_input == "features":
        return raw.astype(np.float64)
    if model.model_input == "embedding":
        # the classifier saw only the embedding: the preprocessed columns are needed once more
        preprocessed = model.embedding.features(features)
        return chain_through_pca(raw, preprocessed - pca.mean_, pca.components_)
    width = pca.components_.shape[1]  # "both": the preprocessed columns, then the embedding
    return raw[:, :width].astype(np.float64) + chain_through_pca(
        raw[:, width:], x[:, :width] - pca.mean_, pca.components_
    )


def chain_through_pca(contributions: np.ndarray, displacement: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Split each PCA component's contribution over the preprocessed columns it is made of.

    `contributions` is rows × components (φ), `displacement` rows × columns (the record minus the PCA
    mean, d), `components` components × columns (the loadings W). Component j's value is
    z_j = Σ_i t_ji with t_ji = W_ji·d_i: column i moved the record by t_ji along the component (whitening
    only rescales z_j and changes nothing below).

    φ_j goes to the columns that moved the record to the side of the mean it ended on (the sign of z_j,
    + when z_j = 0), in proportion to how far: share_ji = max(sign(z_j)·t_ji, 0) / Σ_k max(sign(z_j)·t_kj, 0).
    The shares are in [0, 1] and sum to 1, so the columns' contributions sum to φ_j exactly; a column at
    its mean (d_i = 0, e.g. a constant one) gets nothing; a column that pulled the other way gets nothing
    from that component rather than a negative share.

    The literal linear split t_ji / z_j (signed shares) was rejected: when the columns' moves cancel out
    (z_j near 0, which is where the tree's φ_j need not be small), the shares blow up with opposite signs;
    on the sample it gave single features ±29 log-odds for a margin within ±2. With the rule above, z_j
    near 0 only means that few columns share φ_j. When every t_ji is 0 (the record at the mean along the
    component), φ_j is spread by the squared loadings W_ji², which sum to 1.
    """
    d = displacement.astype(np.float64, copy=False)
    w = components.astype(np.float64, copy=False)
    phi = contributions.astype(np.float64, copy=False)
    # max(±W_ji·d_i, 0) from the positive and negative parts of d and W, as matrix products (no rows ×
    # components × columns array): for z_j ≥ 0 it is d⁺W⁺ + d⁻W⁻, for z_j < 0 it is d⁺W⁻ + d⁻W⁺.
    d_up, d_down = np.maximum(d, 0.0), np.maximum(-d, 0.0)
    w_up, w_down = np.maximum(w, 0.0), np.maximum(-w, 0.0)
    ahead = d_up @ w_up.T + d_down @ w_down.T  # how far the columns pushed each z_j up
    behind = d_up @ w_down.T + d_down @ w_up.T  # and down
    rising = ahead >= behind  # z_j ≥ 0
    moved = np.where(rising, ahead, behind)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(moved > 0, phi / moved, 0.0)
    up, down = np.where(rising, share, 0.0), np.where(rising, 0.0, share)
    out = d_up * (up @ w_up + down @ w_down) + d_down * (up @ w_down + down @ w_up)
    at_mean = moved == 0
    if at_mean.any():
        squared = w**2
        out += np.where(at_mean, phi, 0.0) @ (squared / squared.sum(axis=1, keepdims=True))
    return np.asarray(out, dtype=np.float64)


# ------------------------------------------------------------------------------- original features


def feature_origins(preprocess: ColumnTransformer, feature_names: list[str]) -> np.ndarray:
    """For each column the fitted preprocessing outputs, the index in `feature_names` of its feature.

    Read from the fitted layout (each transformer's output slice and its output columns), never by
    parsing generated column names, which breaks when a feature or a category contains an underscore.
    """
    width = max((output.stop for output in preprocess.output_indices_.values()), default=0)
    origins = np.full(width, -1, dtype=np.intp)
    position = {name: index for index, name in enumerate(feature_names)}
    for name, transformer, columns in preprocess.transformers_:
        output = preprocess.output_indices_[name]
        if output.stop > output.start:
            origins[output] = [position[source] for source in _output_sources(transformer, list(columns))]
    if (origins < 0).any():
        raise ValueError("some preprocessed columns come from no known feature")
    return origins


def _output_sources(transformer: object, columns: list[str]) -> list[str]:
    """The input column behind each output column of one fitted transformer of the ColumnTransformer."""
    last = transformer.steps[-1][1] if isinstance(transformer, Pipeline) else transformer
    if isinstance(last, OneHotEncoder):
        before = transformer[:-1] if isinstance(transformer, Pipeline) and len(transformer) > 1 else None
        inputs = list(before.get_feature_names_out(columns)) if before is not None else columns
        widths = [len(categories) for categories in last.categories_]
        if last.drop_idx_ is not None or getattr(last, "_infrequent_enabled", False):
            raise ValueError("one-hot encoders that drop or group categories are not supported")
        return [source for source, count in zip(inputs, widths, strict=True) for _ in range(count)]
    outputs = list(transformer.get_feature_names_out(columns))  # type: ignore[attr-defined]
    if not set(outputs) <= set(columns):
        raise ValueError(f"a transformer's outputs {outputs[:3]}... are not its inputs {columns[:3]}...")
    return outputs


def _sum_by_origin(per_column: np.ndarray, origins: np.ndarray, count: int) -> np.ndarray:
    """Sum the preprocessed columns' contributions into their features (one-hots into their categorical)."""
    membership = np.zeros((origins.size, count))
    membership[np.arange(origins.size), origins] = 1.0
    return np.asarray(per_column @ membership, dtype=np.float64)


# ------------------------------------------------------------------------------------------ reasons


def _top_reasons(contributions: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of each row's `top_k` largest positive contributions; -1 and NaN fill the rest."""
    rows, count = contributions.shape
    features = np.full((rows, top_k), -1, dtype=np.int32)
    values = np.full((rows, top_k), np.nan)
    kept = min(top_k, count)
    if kept == 0 or rows == 0:
        return features, values
    # the `kept` largest per row, then ordered largest first; among equal contributions the feature listed
    # first in the contract comes first
    candidates = np.argpartition(-contributions, kept - 1, axis=1)[:, :kept] if kept < count else None
    if candidates is None:
        candidates = np.broadcast_to(np.arange(count), (rows, count))
    values_of = np.take_along_axis(contributions, candidates, axis=1)
    within = np.lexsort((candidates, -values_of), axis=1)
    order = np.take_along_axis(candidates, within, axis=1)
    top = np.take_along_axis(values_of, within, axis=1)
    positive = top > 0
    features[:, :kept] = np.where(positive, order, -1)
    values[:, :kept] = np.where(positive, top, np.nan)
    return features, values


def _reason_values(features: pd.DataFrame, reason_features: np.ndarray) -> pa.StringArray:
    """The record's value of each filled reason slot as text (the shortest text that reads back the same),
    slots in row-major order: each feature's values are cast in one go, then put back in slot order."""
    rows, slots = np.nonzero(reason_features >= 0)
    indices = reason_features[rows, slots]
    order = np.argsort(indices, kind="stable")  # the slots grouped by feature
    starts = np.searchsorted(indices[order], np.arange(features.shape[1] + 1))
    pieces = [
        pc.cast(pa.array(features.iloc[:, index], from_pandas=True).take(rows[order[start:end]]), pa.string())
        for index, (start, end) in enumerate(pairwise(starts))
        if end > start
    ]
    grouped = pa.concat_arrays(pieces) if pieces else pa.array([], pa.string())
    back = np.empty_like(order)
    back[order] = np.arange(order.size)
    return grouped.take(back)


# ------------------------------------------------------------------------------------------ outputs


def to_arrow(explanations: Explanations) -> dict[str, pa.Array]:
    """Columns to append to a predictions chunk, row for row: base value, contributions, reasons."""
    rows, count = explanations.contributions.shape
    flat = pa.array(explanations.contributions.astype(np.float32).ravel(), pa.float32())
    filled = explanations.reason_features >= 0  # filled slots come first in each row
    offsets = np.concatenate([[0], np.cumsum(filled.sum(axis=1))]).astype(np.int32)
    names = pa.array(explanations.feature_names, pa.string()).take(pa.array(explanations.reason_features[filled]))
    reasons = pa.StructArray.from_arrays(
        [
            names,
            pa.array(explanations.reason_contributions[filled], pa.float64()),
            explanations.reason_values,
        ],
        fields=list(REASON_TYPE),
    )
    return {
        "base_value": pa.array(np.full(rows, explanations.base_value), pa.float64()),
        "contributions": pa.FixedSizeListArray.from_arrays(flat, count).cast(pa.list_(pa.float32())),
        "reasons": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), reasons, type=pa.list_(REASON_TYPE)),
    }


def no_explanations(rows: int) -> dict[str, pa.Array]:
    """The explanation columns of `rows` predictions made without explanations: nulls."""
    return {name: pa.nulls(rows, type_) for name, type_ in EXPLANATION_TYPES.items()}


def global_importance(
    model: ScoringModel, frame: pd.DataFrame, *, chunk_rows: int = 100_000, approximate: bool = False
) -> pd.Series:
    """Mean |contribution| of each original feature over `frame` (a version's reference set), in
    contract order; computed chunk by chunk so memory is bounded by `chunk_rows`."""
    if frame.empty:
        raise ValueError("global importance needs at least one row")
    total = np.zeros(len(model.feature_names))
    explainer = Explainer.of(model, top_k=0, approximate=approximate)
    for chunk in _chunks(frame, chunk_rows):
        total += np.abs(explainer.explain(chunk).contributions).sum(axis=0)
    return pd.Series(total / len(frame), index=list(model.feature_names), name="mean_abs_contribution")


def _chunks(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    if size < 1:
        raise ValueError(f"chunk_rows must be 1 or more, not {size}")
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]
