"""A seeded corpus of hostile incoming and label files, with what the warehouse must make of each row.

Every file is written into a drop folder together with its expectation: the ids that must be stored
(every good row, nothing else), and for each bad row its 1-based row number and the (column, rule)
pairs that may explain it. A file that cannot be read at all expects one refusal row instead.

Good rows come from the bundled sample (after the reference slice); each row gets at most one
mutation, bad or harmless, so the rule that must catch it is known.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Dataset, Feature
from tests.flows.conftest import sample

Rules = frozenset[tuple[str, str]]


@dataclass
class Expected:
    """What one dropped file must become."""

    name: str
    rows_in: int | None  # None: refused as a whole (one refusal row, nothing stored)
    stored: list[str] = field(default_factory=list)  # ids of the rows that must be stored
    bad: dict[int, Rules] = field(default_factory=dict)  # row number -> acceptable (column, rule)
    stored_labels: list[tuple[str, str]] = field(default_factory=list)  # label files: (id, label) stored


# Ids a database, a shell or a file system might trip on; each must be stored exactly as given.
AWKWARD_IDS = [
    "x'); DROP TABLE records; --",
    "../../../etc/passwd",
    "..\\..\\windows\\system32",
    "C:\\temp\\a b.csv",
    "%_*?[abc]{1}",
    '"quoted", with comma',
    "名前-ß-é-😀",
    "$(rm -rf /)",
    "line\nbreak",
    "tab\tinside",
    "NULL",
    "nan",
    "i" * 5000,
]


def _rule_for_number(feature: Feature, value: float) -> str | None:
    if np.isnan(value):
        return None if feature.nullable else "required"
    if np.isinf(value):
        return "finite"
    if feature.min is not None and value < feature.min:
        return "min"
    if feature.max is not None and value > feature.max:
        return "max"
    return None


class Corpus:
    """Writes hostile files and remembers what each must become."""

    def __init__(self, dataset: Dataset, seed: int, start: int = 4000) -> None:
        self.dataset = dataset
        self.rng = random.Random(seed)
        self.rows = sample().iloc[start:].drop(columns=[dataset.target_column]).reset_index(drop=True)
        self.targets = sample().iloc[start:][dataset.target_column].reset_index(drop=True)
        self.next_row = 0
        self.stored_ids: list[str] = []  # good ids stored so far (files are ingested in name order)
        self.awkward = list(AWKWARD_IDS)
        self.expected: dict[str, Expected] = {}  # incoming files
        self.expected_labels: dict[str, Expected] = {}  # label files
        f = dataset.features
        self.numeric = [x for x in f if x.kind == "numeric"]
        self.required_numeric = [x for x in self.numeric if not x.nullable]
        self.optional_numeric = [x for x in self.numeric if x.nullable]
        self.bounded_below = [x for x in self.numeric if x.min is not None]
        self.bounded_above = [x for x in self.numeric if x.max is not None]
        self.closed_categories = [x for x in f if x.kind == "categorical" and x.allowed]
        self.required_categories = [x for x in f if x.kind == "categorical" and not x.nullable]
        self.optional_categories = [x for x in f if x.kind == "categorical" and x.nullable]

    # ------------------------------------------------------------------------------------- rows

    def take(self, n: int) -> pd.DataFrame:
        rows = self.rows.iloc[self.next_row : self.next_row + n].reset_index(drop=True).astype(object)
        self.next_row += n
        assert len(rows) == n, "the sample ran out of rows"
        return rows

    def _unknown_value(self, feature: Feature) -> str:
        allowed = feature.allowed or []
        choices = ["unknown", "XX", "n/a", allowed[0].lower(), allowed[0] + "_", " ".join(allowed[:2])]
        value = self.rng.choice([c for c in choices if c not in allowed and c.strip()])
        return value

    def _bad(self, id_column: str, earlier_good: list[str]) -> tuple[str, object, Rules]:
        """A mutation that must send the row to quarantine: (column, new value, acceptable (column, rule))."""
        rng = self.rng
        kinds = ["text", "infinity", "required", "min", "max", "category", "category_missing", "id_missing", "huge"]
        if earlier_good:
            kinds.append("duplicate")
        kind = rng.choice(kinds)
        if kind == "text":
            f = rng.choice(self.numeric)
            return (
                f.name,
                rng.choice(["abc", "1,5", "12%", "--3", "one", "0x1G", "5 5"]),
                frozenset({(f.name, "numeric")}),
            )
        if kind == "infinity":
            f = rng.choice(self.numeric)
            # "1e999" overflows: Arrow's cast reads it as infinity, pandas' fallback (taken when another cell
            # of the column is not a number) as not a number. Either is a right reason.
            value = rng.choice(["inf", "-inf", "Infinity", "1e999"])
            return f.name, value, frozenset({(f.name, "finite"), (f.name, "numeric")})
        if kind == "required":
            f = rng.choice(self.required_numeric)
            return f.name, rng.choice(["NaN", "nan", "", "null", "NA"]), frozenset({(f.name, "required")})
        if kind == "min":
            f = rng.choice(self.bounded_below)
            return f.name, f"{f.min - rng.uniform(0.5, 100):.3f}", frozenset({(f.name, "min")})  # type: ignore[operator]
        if kind == "max":
            f = rng.choice(self.bounded_above)
            return f.name, f"{f.max + rng.uniform(1, 100):.3f}", frozenset({(f.name, "max")})  # type: ignore[operator]
        if kind == "category":
            f = rng.choice(self.closed_categories)
            return f.name, self._unknown_value(f), frozenset({(f.name, "allowed")})
        if kind == "category_missing":
            f = rng.choice(self.required_categories)
            return f.name, "", frozenset({(f.name, "required")})
        if kind == "id_missing":
            return id_column, rng.choice(["", "   "]), frozenset({(id_column, "required")})
        if kind == "huge":
            f = rng.choice(self.closed_categories)
            return f.name, "x" * 200_000, frozenset({(f.name, "allowed")})
        return id_column, rng.choice(earlier_good), frozenset({(id_column, "unique")})

    def _harmless(self, id_column: str) -> tuple[str, object]:
        """A mutation the contract accepts: the row must still be stored."""
        rng = self.rng
        kinds = ["optional_number", "optional_category", "scientific"]
        if self.awkward:
            kinds += ["awkward_id"] * 3
        kind = rng.choice(kinds)
        if kind == "optional_number":
            return rng.choice(self.optional_numeric).name, rng.choice(["NaN", "nan", "", "NA", "null", "None"])
        if kind == "optional_category":
            return rng.choice(self.optional_categories).name, ""
        if kind == "scientific":
            return rng.choice(self.bounded_below).name, "1e1"
        return id_column, self.awkward.pop(0)

    def mutated(
        self, n: int, bad_share: float, harmless_share: float
    ) -> tuple[pd.DataFrame, list[str], dict[int, Rules]]:
        """`n` rows, about `bad_share` of them bad and `harmless_share` oddly shaped but good."""
        id_column = self.dataset.id_column
        rows = self.take(n)
        good: list[str] = []
        bad: dict[int, Rules] = {}
        for index in range(n):
            draw = self.rng.random()
            if draw < bad_share:
                column, value, rules = self._bad(id_column, self.stored_ids + good)
                rows.at[index, column] = value
                bad[index + 1] = rules
                continue
            if draw < bad_share + harmless_share:
                column, value = self._harmless(id_column)
                rows.at[index, column] = value
            good.append(str(rows.at[index, id_column]))
        return rows, good, bad

    # ------------------------------------------------------------------------------------ files

    def _write_csv(self, folder: Path, name: str, frame: pd.DataFrame, **kwargs: object) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False, **kwargs)  # type: ignore[call-overload]
        return path

    def expect(self, expected: Expected) -> None:
        self.expected[expected.name] = expected
        self.stored_ids += expected.stored

    def refused(self, folder: Path, name: str, data: bytes) -> None:
        (folder / name).write_bytes(data)
        self.expect(Expected(name=name, rows_in=None))

    def incoming(self, folder: Path) -> None:
        """The hostile incoming files, named so that they are ingested in this order."""
        folder.mkdir(parents=True, exist_ok=True)
        dataset, rng = self.dataset, self.rng
        id_column = dataset.id_column

        rows, good, bad = self.mutated(150, bad_share=0.5, harmless_share=0.25)
        rows["comment"] = [rng.choice(['a "quoted", text', "x,y;z", "", "ünï"]) for _ in range(len(rows))]
        rows["extra_number"] = np.arange(len(rows))
        self._write_csv(folder, "a_mixed.csv", rows)
        self.expect(Expected("a_mixed.csv", len(rows), good, bad))

        # Parquet: float columns carry NaN and infinities as numbers; `annual_inc` stays text (strings in a number).
        rows, good, bad = self.mutated(100, bad_share=0.5, harmless_share=0.2)
        floats = {f.name: f for f in self.numeric if f.name != "annual_inc"}
        for name in floats:
            rows[name] = pd.to_numeric(rows[name].replace({"": None}), errors="coerce")
        for number, rules in list(bad.items()):
            column = next(iter(rules))[0]
            if column in floats:  # the mutation is now a number: what the contract says of that number
                rule = _rule_for_number(floats[column], float(rows.at[number - 1, column]))
                if rule is None:
                    del bad[number]
                else:
                    bad[number] = frozenset({(column, rule)})
        good = [str(rows.at[i, id_column]) for i in range(len(rows)) if i + 1 not in bad]
        rows.to_parquet(folder / "b_mixed.parquet", index=False)
        self.expect(Expected("b_mixed.parquet", len(rows), good, bad))

        rows = self.take(12).drop(columns=["int_rate"])
        self._write_csv(folder, "c_missing_column.csv", rows)
        self.expect(
            Expected("c_missing_column.csv", 12, [], {i + 1: frozenset({("int_rate", "present")}) for i in range(12)})
        )

        self.refused(folder, "d_empty.csv", b"")
        self._write_csv(folder, "e_header_only.csv", self.take(0))
        self.expect(Expected("e_header_only.csv", 0))

        buffer = io.BytesIO()
        self.take(30).to_parquet(buffer, index=False)
        self.refused(folder, "f_truncated.parquet", buffer.getvalue()[: len(buffer.getvalue()) // 2])
        self.refused(folder, "g_semicolon.csv", self.take(5).to_csv(index=False, sep=";").encode())
        # One Latin-1 byte in one row: that row is refused naming its column, the rest of the file is stored.
        latin = self.take(5)
        latin.loc[2, "addr_state"] = "Québec"
        (folder / "h_latin1.csv").write_bytes(latin.to_csv(index=False).encode("latin-1"))
        ids = [str(v) for v in latin[id_column]]
        self.expect(Expected("h_latin1.csv", 5, ids[:2] + ids[3:], {3: frozenset({("addr_state", "utf8")})}))
        self.refused(folder, "i_utf16.csv", self.take(5).to_csv(index=False).encode("utf-16"))
        wide_row = self.take(5)
        lines = wide_row.to_csv(index=False).splitlines()
        (folder / "j_wide_row.csv").write_bytes("\n".join([*lines, ",".join(["1"] * 3000)]).encode() + b"\n")
        last = str(wide_row.columns[-1])
        self.expect(
            Expected("j_wide_row.csv", 6, [str(v) for v in wide_row[id_column]], {6: frozenset({(last, "fields")})})
        )

        wide = self.take(10)
        extra = pd.DataFrame({f"extra_{i:04d}": [f"v{i}"] * len(wide) for i in range(1500)})
        self._write_csv(folder, "k_wide_file.csv", pd.concat([wide, extra], axis=1))
        self.expect(Expected("k_wide_file.csv", 10, [str(v) for v in wide[id_column]]))

        huge = self.take(6)
        huge["comment"] = ["short"] * 6
        huge.loc[1, "comment"] = "y" * 1_000_000
        huge.loc[4, "term"] = "z" * 1_000_000
        self._write_csv(folder, "l_huge_field.csv", huge)
        ids = [str(v) for v in huge[id_column]]
        self.expect(Expected("l_huge_field.csv", 6, ids[:4] + ids[5:], {5: frozenset({("term", "allowed")})}))

        rows, good, bad = self.mutated(20, bad_share=0.3, harmless_share=0.6)
        name = "m_odd [1] it's; *?.csv"
        self._write_csv(folder, name, rows)
        self.expect(Expected(name, 20, good, bad))

        crlf = self.take(10)
        text = crlf.to_csv(index=False, lineterminator="\r\n").encode("utf-8-sig")
        (folder / "n_crlf_bom.csv").write_bytes(text)
        self.expect(Expected("n_crlf_bom.csv", 10, [str(v) for v in crlf[id_column]]))

        nested = pa.Table.from_pandas(self.take(4), preserve_index=False)
        name = dataset.features[0].name
        nested = nested.set_column(
            nested.schema.get_field_index(name), name, pa.array([[1.0, 2.0]] * 4, pa.list_(pa.float64()))
        )
        buffer = io.BytesIO()
        pq.write_table(nested, buffer)
        self.refused(folder, "o_nested.parquet", buffer.getvalue())

        typed = self.take(8)
        first = dataset.features[0]
        typed[first.name] = [True, False] * 4  # a boolean where a number belongs
        typed[id_column] = np.arange(9_000_001, 9_000_009)  # integer ids: stored as text
        typed.to_parquet(folder / "p_wrong_types.parquet", index=False)
        self.expect(
            Expected("p_wrong_types.parquet", 8, [], {i + 1: frozenset({(first.name, "numeric")}) for i in range(8)})
        )

        # A line with fields missing in the middle of the file and a last line cut in transit: those rows only.
        short = self.take(5)
        ragged = short.to_csv(index=False).splitlines()
        ragged[2] = ",".join(ragged[2].split(",")[:5])
        ragged[5] = ragged[5][: len(ragged[5]) // 2].rstrip(",")
        (folder / "q_ragged.csv").write_bytes("\n".join(ragged).encode())  # no newline after the cut line
        ids = [str(v) for v in short[id_column]]
        fifth, cut = str(short.columns[5]), str(short.columns[ragged[5].count(",") + 1])
        self.expect(
            Expected(
                "q_ragged.csv",
                5,
                [ids[0], ids[2], ids[3]],
                {2: frozenset({(fifth, "fields")}), 5: frozenset({(cut, "fields")})},
            )
        )
        self.refused(folder, "r_notes.txt", b"loan_id,funded_amnt\nX1,100\n")

        again = self.take(20)
        reused = rng.sample(self.expected["a_mixed.csv"].stored, 12)
        again.loc[: len(reused) - 1, id_column] = reused
        self._write_csv(folder, "z_duplicates.csv", again)
        self.expect(
            Expected(
                "z_duplicates.csv",
                20,
                [str(v) for v in again[id_column].iloc[len(reused) :]],
                {i + 1: frozenset({(id_column, "unique")}) for i in range(len(reused))},
            )
        )

    def labels(self, folder: Path, stored: list[str], quarantined: list[str]) -> None:
        """Hostile label files for ids that were stored (and some that were not)."""
        folder.mkdir(parents=True, exist_ok=True)
        dataset, rng = self.dataset, self.rng
        classes = list(dataset.classes)
        known = rng.sample(stored, 70)
        times = pd.date_range("2026-11-20T09:00:00Z", periods=len(known), freq="7min").strftime("%Y-%m-%dT%H:%M:%SZ")
        frame = pd.DataFrame(
            {dataset.id_column: known, "label": [rng.choice(classes) for _ in known], "labelled_at": times}
        )
        frame = frame.astype(object)
        bad: dict[int, Rules] = {}
        id_column = dataset.id_column
        for index in range(len(frame)):
            draw = rng.random()
            if draw > 0.45:
                continue
            kind = rng.choice(
                ["unknown", "quarantined", "label", "label_missing", "time", "time_missing", "id_missing"]
            )
            if kind == "unknown":
                frame.at[index, id_column], rules = f"NOPE-{index}", {(id_column, "known")}
            elif kind == "quarantined" and quarantined:
                frame.at[index, id_column], rules = rng.choice(quarantined), {(id_column, "known")}
            elif kind == "label":
                frame.at[index, "label"], rules = (
                    rng.choice(["maybe", classes[0].upper(), "1", "x" * 10_000]),
                    {("label", "allowed")},
                )
            elif kind == "label_missing":
                frame.at[index, "label"], rules = "", {("label", "required")}
            elif kind == "time":
                frame.at[index, "labelled_at"], rules = (
                    rng.choice(["yesterday", "2026-13-45", "soon"]),
                    {("labelled_at", "timestamp")},
                )
            elif kind == "time_missing":
                frame.at[index, "labelled_at"], rules = "", {("labelled_at", "required")}
            else:
                frame.at[index, id_column], rules = "", {(id_column, "required")}
            bad[index + 1] = frozenset(rules)
        # The same label for the same id and time twice: the second is a duplicate.
        twice = next(i for i in range(len(frame)) if i + 1 not in bad)
        frame = pd.concat([frame, frame.iloc[[twice]]], ignore_index=True)
        bad[len(frame)] = frozenset({(id_column, "unique")})
        frame["note"] = "extra column"
        frame.to_csv(folder / "la_mixed.csv", index=False)
        good = [(str(frame.at[i, id_column]), str(frame.at[i, "label"])) for i in range(len(frame)) if i + 1 not in bad]
        self.expected_labels["la_mixed.csv"] = Expected("la_mixed.csv", len(frame), bad=bad, stored_labels=good)

        other = rng.sample([i for i in stored if i not in known], 10)
        renamed = pd.DataFrame({"record_id": other, "label": classes[1], "labelled_at": "2026-11-21T10:00:00+01:00"})
        renamed.to_csv(folder / "lb_record_id.csv", index=False)
        self.expected_labels["lb_record_id.csv"] = Expected(
            "lb_record_id.csv", 10, stored_labels=[(i, classes[1]) for i in other]
        )

        typed = pd.DataFrame(
            {
                id_column: rng.sample(stored, 6),
                "label": classes[0],
                "labelled_at": pd.date_range("2026-11-22", periods=6, freq="h", tz="UTC"),
            }
        )
        typed.to_parquet(folder / "lc_typed.parquet", index=False)
        self.expected_labels["lc_typed.parquet"] = Expected(
            "lc_typed.parquet", 6, stored_labels=[(str(i), classes[0]) for i in typed[id_column]]
        )

        header_only = pd.DataFrame(columns=[id_column, "label", "labelled_at"])
        header_only.to_csv(folder / "ld_header_only.csv", index=False)
        self.expected_labels["ld_header_only.csv"] = Expected("ld_header_only.csv", 0)

        def refuse(name: str, data: bytes) -> None:
            (folder / name).write_bytes(data)
            self.expected_labels[name] = Expected(name, None)

        some = frame.iloc[:5][[id_column, "label", "labelled_at"]]
        refuse("le_missing_column.csv", some.drop(columns=["labelled_at"]).to_csv(index=False).encode())
        refuse("lf_empty.csv", b"")
        buffer = io.BytesIO()
        some.to_parquet(buffer, index=False)
        refuse("lg_truncated.parquet", buffer.getvalue()[:50])
        refuse("lh_semicolon.csv", some.to_csv(index=False, sep=";").encode())
        latin = some.copy()
        latin["label"] = "défaut"
        (folder / "li_latin1.csv").write_bytes(latin.to_csv(index=False).encode("latin-1"))
        self.expected_labels["li_latin1.csv"] = Expected(
            "li_latin1.csv", 5, bad={i: frozenset({("label", "utf8")}) for i in range(1, 6)}
        )

        # Times that must not be believed, and one id given two labels at one time.
        chosen = rng.sample([i for i in stored if i not in known and i not in other], 6)
        odd = pd.DataFrame(
            {
                id_column: [*chosen, chosen[5]],
                "label": [classes[0], classes[1], classes[0], classes[1], classes[0], classes[0], classes[1]],
                "labelled_at": [
                    "2099-01-01T00:00:00Z",  # the future: would win over every later correction
                    "12/01/2026",  # December or January?
                    "01.02.26",
                    "2026-11-20T08:00:00Z",
                    "2026-11-20",
                    "2026-11-21T10:00:00Z",
                    "2026-11-21T11:00:00+01:00",  # the same instant as the row above, another label
                ],
            }
        )
        odd.to_csv(folder / "lj_times.csv", index=False)
        self.expected_labels["lj_times.csv"] = Expected(
            "lj_times.csv",
            7,
            bad={
                1: frozenset({("labelled_at", "future")}),
                2: frozenset({("labelled_at", "ambiguous")}),
                3: frozenset({("labelled_at", "ambiguous")}),
                6: frozenset({("label", "consistent")}),
                7: frozenset({("label", "consistent")}),
            },
            stored_labels=[(chosen[3], classes[1]), (chosen[4], classes[0])],
        )
