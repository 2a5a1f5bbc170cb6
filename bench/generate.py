"""Scale the sample's schema to N rows: bootstrap rows, add noise to numbers, give each a new id.

The output has the incoming-file shape (id + features, no target), written as Parquet in chunks so
that generating 10M rows stays within a few hundred MB. Not committed: `make bench` builds it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Settings, load_settings

CHUNK = 500_000


def bootstrap_chunk(sample: pd.DataFrame, settings: Settings, start: int, rows: int, seed: int) -> pa.Table:
    """`rows` rows drawn with replacement from `sample`, numerics jittered by 5% of their std, within range."""
    rng = np.random.default_rng(seed)
    dataset = settings.dataset
    picked = sample.iloc[rng.integers(0, len(sample), rows)].reset_index(drop=True)
    columns: dict[str, pa.Array] = {
        dataset.id_column: pa.array([f"G{n:010d}" for n in range(start, start + rows)], pa.string())
    }
    for feature in dataset.features:
        values = picked[feature.name]
        if feature.kind == "numeric":
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            noisy = numbers + rng.normal(0, 0.05 * np.nanstd(numbers), rows)
            columns[feature.name] = pa.array(np.clip(noisy, feature.min, feature.max), pa.float64())
        else:
            columns[feature.name] = pa.array(values.astype(object).where(values.notna(), None), pa.string())
    return pa.table(columns)


def generate(rows: int, out: Path, settings: Settings, seed: int = 7) -> Path:
    sample = pd.read_csv(settings.reference_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    try:
        for number, start in enumerate(range(0, rows, CHUNK)):
            table = bootstrap_chunk(sample, settings, start, min(CHUNK, rows - start), seed + number)
            writer = writer or pq.ParquetWriter(out, table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/records.parquet"))
    args = parser.parse_args()
    print(generate(args.rows, args.out, load_settings()))


if __name__ == "__main__":
    main()
