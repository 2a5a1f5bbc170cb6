"""The two yardsticks the score flow is measured against, on the same file and the same model.

- `bare_chain`: pyarrow read -> the fitted embedding -> XGBoost predict -> pyarrow write, chunked, in
  one process, no Prefect, no validation: the physical limit of this machine for this model.
- `peer_chain`: the way the best-known public course pipeline scores a batch: pandas read -> records
  as dicts -> DictVectorizer -> predict -> to_parquet, all in memory.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.feature_extraction import DictVectorizer
from xgboost import XGBClassifier

from pipeline.model import ScoringModel


def bare_chain(source: Path, out: Path, model: ScoringModel, chunk_rows: int) -> float:
    """Seconds to score every row of `source` into `out`, chunk by chunk."""
    start = time.perf_counter()
    writer: pq.ParquetWriter | None = None
    try:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas()
            scores, labels, vectors = model.score(frame)
            table = pa.table(
                {
                    "record_id": batch.column(0),
                    "score": scores,
                    "label": labels,
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
                }
            )
            writer = writer or pq.ParquetWriter(out, table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return time.perf_counter() - start


def fit_peer(
    reference: pd.DataFrame, features: list[str], target: np.ndarray, params: dict
) -> tuple[DictVectorizer, XGBClassifier]:  # type: ignore[type-arg]
    """The peer's own preprocessing (DictVectorizer over record dicts) and the same XGBoost parameters."""
    vectorizer = DictVectorizer(sparse=True)
    x = vectorizer.fit_transform(reference[features].to_dict(orient="records"))
    return vectorizer, XGBClassifier(**params).fit(x, target)


def peer_chain(source: Path, out: Path, vectorizer: DictVectorizer, model: XGBClassifier, features: list[str]) -> float:
    """Seconds to score `source` the peer way: everything in memory at once."""
    start = time.perf_counter()
    frame = pd.read_parquet(source)
    records = frame[features].to_dict(orient="records")
    scores = model.predict_proba(vectorizer.transform(records))[:, 1]
    pd.DataFrame({"record_id": frame.iloc[:, 0], "score": scores}).to_parquet(out)
    return time.perf_counter() - start
