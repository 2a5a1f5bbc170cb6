"""What retraining rounds add to the warehouse's training-row tables, when every challenger is rejected.

python -m bench.reference_growth [--rounds 3] [--rows 800]

Trains the first version on the repository's config, then runs `--rounds` rounds of: `--rows` new
arrivals ingested and scored, their labels collected, `retrain` with `min_improvement = 1` (no
challenger can clear it, so each is rejected). Prints the rows and Parquet bytes each round added to
`reference` and to `challenger_rows` (when the warehouse has it), and writes the same to
artifacts/bench/reference_growth.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from flows import _environment
from pipeline.config import REPO_ROOT

OUT = REPO_ROOT / "artifacts" / "bench"
TABLES = ("reference", "challenger_rows")


def table_size(folder: Path, name: str) -> tuple[int, int]:
    """Rows and bytes of a table's current files (0, 0 when the warehouse has no such table)."""
    from deltalake import DeltaTable

    location = folder / name
    if not (location / "_delta_log").is_dir():
        return 0, 0
    table = DeltaTable(str(location))
    rows = table.to_pyarrow_dataset().count_rows()
    sizes = table.get_add_actions(flatten=True).column("size_bytes").to_pylist()
    return int(rows), int(sum(sizes))


def run(rounds: int, rows: int, folder: Path) -> list[dict[str, Any]]:
    from bench.run import make_config
    from flows.feedback import collect_feedback
    from flows.ingest import ingest
    from flows.retrain import retrain
    from flows.runtime import without_heartbeats
    from flows.score import score
    from flows.train import train
    from pipeline import simulate
    from pipeline.config import load_settings

    config = make_config(folder)
    text = config.read_text()
    assert "\nmin_improvement = 0.005\n" in text, "the repository config's min_improvement moved; update this bench"
    text = text.replace("\nmin_improvement = 0.005\n", "\nmin_improvement = 1.0\n")
    config.write_text(text + "\n[drop]\nsettle_seconds = 0  # files are complete when dropped\n")
    settings = load_settings(config)
    dataset = settings.dataset
    sample = pd.read_csv(settings.reference_path, dtype=str, keep_default_na=False)
    start = round(len(sample) * settings.training.reference_fraction) + 50
    assert not settings.warehouse_is_remote, "this measurement reads a local warehouse"
    warehouse = Path(settings.warehouse_location)
    results = []
    with without_heartbeats():
        train(str(config))
        for n in range(rounds):
            day = sample.iloc[start + n * rows : start + (n + 1) * rows]
            settings.incoming_dir.mkdir(parents=True, exist_ok=True)
            day.drop(columns=[dataset.target_column]).to_csv(settings.incoming_dir / f"day-{n}.csv", index=False)
            ingest(str(config))
            score(str(config))
            labels = simulate.labels_file(day, dataset, date(2026, 11, 20) + timedelta(days=n))
            settings.feedback_dir.mkdir(parents=True, exist_ok=True)
            labels.to_csv(settings.feedback_dir / f"labels-{n}.csv", index=False)
            collect_feedback(str(config))
            before = {name: table_size(warehouse, name) for name in TABLES}
            decision = retrain(str(config), trigger="bench")
            after = {name: table_size(warehouse, name) for name in TABLES}
            results.append(
                {
                    "round": n + 1,
                    "challenger": decision.challenger,
                    "promoted": decision.promoted,
                    "reason": decision.reason[:60],
                    **{f"{name}_rows_added": after[name][0] - before[name][0] for name in TABLES},
                    **{f"{name}_bytes_added": after[name][1] - before[name][1] for name in TABLES},
                }
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=800)
    args = parser.parse_args()
    _environment.apply_defaults()
    with tempfile.TemporaryDirectory(prefix="scorehouse-growth-") as folder:
        results = run(args.rounds, args.rows, Path(folder))
    table = pd.DataFrame(results)
    print(table.to_string(index=False))
    print("total:", {c: int(table[c].sum()) for c in table.columns if c.endswith("_added")})
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "reference_growth.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
