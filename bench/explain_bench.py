"""What explanations cost the scoring of a chunk: throughput with explanations over throughput without.

A model is fitted on the sample as `train` fits it (the repo config's dataset, model input and
parameters). Rows shaped like the sample (bootstrapped, jittered, fresh ids: `bench.generate`) are
made one chunk at a time, outside the timings; each chunk is then scored three ways, in a rotating
order so that none always runs first:

- plain: to pandas, `model.score`, the predictions columns as Arrow (what the score flow does per chunk);
- exact: plain, then `Explainer.explain` and `to_arrow` (TreeSHAP);
- approximate: the same with `approximate=True`;
- exact_once, approximate_once: `Explainer.score_and_explain`, which preprocesses the chunk once for
  both (what the score flow does).

Storage and Prefect are left out, so the ratios are a lower bound for the score flow's. The first
chunk is also taken apart step by step (`cost_*` seconds), to show where the time goes.

    uv run python -m bench.explain_bench --rows 1000000
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from bench.generate import bootstrap_chunk
from pipeline.config import Settings, load_settings
from pipeline.explain import Explainer, explain, to_arrow, tree_contributions
from pipeline.model import ScoringModel, classifier_input, fit_model
from pipeline.training import binary_target, reference_slice

Variant = Callable[[ScoringModel, pa.Table], dict[str, pa.Array]]


def variants(model: ScoringModel) -> dict[str, Variant]:
    """Each way of scoring a chunk; the explainers are prepared once, as the score flow prepares its own."""
    exact_explainer = Explainer.of(model)
    approximate_explainer = Explainer.of(model, approximate=True)

    def plain(model: ScoringModel, chunk: pa.Table) -> dict[str, pa.Array]:
        return _predictions(model, chunk.to_pandas())

    def with_explainer(explainer: Explainer) -> Variant:
        def run(model: ScoringModel, chunk: pa.Table) -> dict[str, pa.Array]:
            frame = chunk.to_pandas()
            return _predictions(model, frame) | to_arrow(explainer.explain(frame))

        return run

    def once(explainer: Explainer) -> Variant:
        def run(model: ScoringModel, chunk: pa.Table) -> dict[str, pa.Array]:
            scores, labels, vectors, explanations = explainer.score_and_explain(chunk.to_pandas())
            return _columns(scores, labels, vectors) | to_arrow(explanations)

        return run

    return {
        "plain": plain,
        "exact": with_explainer(exact_explainer),
        "approximate": with_explainer(approximate_explainer),
        "exact_once": once(exact_explainer),
        "approximate_once": once(approximate_explainer),
    }


def _predictions(model: ScoringModel, frame: pd.DataFrame) -> dict[str, pa.Array]:
    return _columns(*model.score(frame))


def _columns(scores: np.ndarray, labels: np.ndarray, vectors: np.ndarray) -> dict[str, pa.Array]:
    return {
        "score": pa.array(scores, pa.float64()),
        "label": pa.array(labels, pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), vectors.shape[1]),
    }


def bench_model(settings: Settings) -> ScoringModel:
    """The model `train` would fit on the configured reference slice (without the hold-out split)."""
    dataset = settings.dataset
    reference = reference_slice(pd.read_csv(settings.reference_path), settings.training.reference_fraction, dataset)
    target = binary_target(reference[dataset.target_column], dataset)
    return fit_model(reference, target, dataset, settings.model, version="bench", seed=settings.training.seed)


def explain_over_plain(rows: int, chunk_rows: int, settings: Settings | None = None) -> dict[str, float]:
    """Seconds per variant over `rows` rows in chunks of `chunk_rows`, and the throughput ratios
    (with explanations / without). Peak memory: traced allocations (numpy and Python; not XGBoost's
    own buffers) of one chunk per variant, and the process's peak RSS."""
    settings = settings or load_settings()
    model = bench_model(settings)
    sample = pd.read_csv(settings.reference_path)
    prepared = variants(model)
    seconds = dict.fromkeys(prepared, 0.0)
    peaks: dict[str, float] = {}
    costs: dict[str, float] = {}
    for number, start in enumerate(range(0, rows, chunk_rows)):
        chunk = bootstrap_chunk(sample, settings, start, min(chunk_rows, rows - start), seed=number)
        if number == 0:
            costs = cost_breakdown(model, chunk)
            peaks = {name: _traced_peak_mb(variant, model, chunk) for name, variant in prepared.items()}
        names = list(prepared)
        for name in names[number % len(names) :] + names[: number % len(names)]:
            begin = time.perf_counter()
            prepared[name](model, chunk)
            seconds[name] += time.perf_counter() - begin
    return {
        "rows": float(rows),
        "chunk_rows": float(chunk_rows),
        **{f"{name}_s": value for name, value in seconds.items()},
        **{f"{name}_over_plain": seconds["plain"] / value for name, value in seconds.items() if name != "plain"},
        **costs,
        **{f"peak_traced_mb_{name}": value for name, value in peaks.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def cost_breakdown(model: ScoringModel, chunk: pa.Table) -> dict[str, float]:
    """Seconds of each step of scoring and explaining one chunk, one after the other."""
    frame = chunk.to_pandas()
    clock = _Clock()
    model.score(frame)
    clock.lap("score")
    x, _ = classifier_input(model.embedding, frame[model.feature_names], model.model_input)
    clock.lap("classifier_input")
    model.classifier.predict_proba(x)
    clock.lap("predict_proba")
    tree_contributions(model.classifier, x)
    clock.lap("xgboost_contributions_exact")
    tree_contributions(model.classifier, x, approximate=True)
    clock.lap("xgboost_contributions_approximate")
    explainer = Explainer.of(model)
    clock.lap("prepare_tables")
    explainer.explain_input(frame[model.feature_names], x)
    clock.lap("explain_exact_tables")
    explanations = explain(model, frame)
    clock.lap("explain_exact")
    to_arrow(explanations)
    clock.lap("to_arrow")
    return clock.laps


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[f"cost_{name}_s"], self._last = now - self._last, now


def _traced_peak_mb(variant: Variant, model: ScoringModel, chunk: pa.Table) -> float:
    tracemalloc.start()
    try:
        variant(model, chunk)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=None, help="default: the config's scoring.chunk_rows")
    args = parser.parse_args()
    settings = load_settings()
    results = explain_over_plain(args.rows, args.chunk_rows or settings.scoring.chunk_rows, settings)
    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value:,.3f}" if not float(value).is_integer() else f"{name:<{width}}  {value:,.0f}")
    met = max(results["exact_over_plain"], results["exact_once_over_plain"]) >= 0.5 or (
        max(results["approximate_over_plain"], results["approximate_once_over_plain"]) >= 0.8
    )
    target = "met" if met else "not met"
    print(f"target (exact >= 0.5x or approximate >= 0.8x): {target}")


if __name__ == "__main__":
    main()
