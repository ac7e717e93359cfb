"""The published baselines as data: every number of docs/baselines.md (hard-coded here), with its provenance."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from cebench.baselines import convert, load_baselines, print_baselines

NAN = math.nan
# (source, table, row label as printed, L1 %, L2 %, PSNR dB, SSIM fraction), copied from the sources docs/baselines.md
# names (the papers' tables, the repository README).
EXPECTED = [
    ("Pathak et al. 2016", "Table 2", "NN-inpainting (HOG features)", 19.92, 6.92, 12.79, NAN),
    ("Pathak et al. 2016", "Table 2", "NN-inpainting (our features)", 15.10, 4.30, 14.70, NAN),
    ("Pathak et al. 2016", "Table 2", "Our Reconstruction (joint)", 9.37, 1.96, 18.58, NAN),
    ("Viala Bellander & Holst (reproduction)", "Table I", "Pathak et al.", 15.10, 4.30, 14.70, NAN),
    ("Viala Bellander & Holst (reproduction)", "Table I", "Ours, B&W", 20.25, 32.43, 12.95, 0.111),
    ("Viala Bellander & Holst (reproduction)", "Table I", "Ours, Colour", 18.16, 29.60, 13.43, 0.154),
    ("xyfJASON/Context-Encoder-pytorch", "README results table", "L2 + Adv", 7.20, NAN, 20.3027, 0.5915),
    ("xyfJASON/Context-Encoder-pytorch", "README results table", "L2 only", 6.94, NAN, 20.5573, 0.6153),
    ("cebench measurement of BoyuanJiang/context_encoder_pytorch", "docs/baselines.md",
     "BoyuanJiang/context_encoder_pytorch (Paris model)", 9.50, 1.86, 18.39, 0.33),
]
PROVENANCE = ["key", "kind", "source", "reference", "table", "row_label", "method", "dataset", "region", "value_range",
              "convention", "printed"]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return load_baselines()


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9)


@pytest.mark.parametrize("expected", EXPECTED, ids=[e[2] for e in EXPECTED])
def test_every_design_number_is_present(table: pd.DataFrame, expected: tuple) -> None:
    source, tab, label, *numbers = expected
    rows = table[(table["source"] == source) & (table["table"] == tab) & (table["row_label"] == label)]
    assert len(rows) == 1, f"{source} {tab} {label!r} missing"
    row = rows.iloc[0]
    for metric, value in zip(("l1", "l2", "psnr", "ssim"), numbers, strict=True):
        assert _same(float(row[metric]), value), (label, metric, row[metric], value)


def test_no_extra_rows_and_unique_keys(table: pd.DataFrame) -> None:
    assert len(table) == len(EXPECTED)
    assert table["key"].is_unique


def test_every_row_has_provenance(table: pd.DataFrame) -> None:
    for col in PROVENANCE:
        assert table[col].notna().all() and (table[col].astype(str).str.strip() != "").all(), col
    for _, row in table.iterrows():  # a paper (authors, title, year or arXiv id) or a repository by name
        assert re.search(r"arXiv:\d{4}\.\d{5}|\b20\d\d\b|[\w-]+/[\w.-]+", row["reference"]), row["key"]
        assert "DESIGN" not in " ".join(map(str, row.to_numpy()))


def test_every_file_a_baseline_cites_is_in_the_repository(table: pd.DataFrame) -> None:
    root = Path(__file__).resolve().parent.parent
    for text in table.to_numpy().ravel():
        for path in re.findall(r"\b(?:docs|cebench)/[\w./-]+\.(?:md|csv|py)", str(text)):
            assert (root / path).is_file(), path


def test_printed_text_holds_the_numbers_as_printed(table: pd.DataFrame) -> None:
    printed = dict(zip(table["key"], table["printed"], strict=True))
    assert "32.43%" in printed["repro_bw"] and "11.1%" in printed["repro_bw"]
    assert "15.4%" in printed["repro_colour"]
    assert "0.0720" in printed["thirdparty_celebahq_joint"] and "0.6153" in printed["thirdparty_celebahq_l2"]
    assert "09.37" not in printed["pathak2016_ce_joint"] and "9.37%" in printed["pathak2016_ce_joint"]


def test_inconsistencies_are_noted(table: pd.DataFrame) -> None:
    notes = dict(zip(table["key"], table["note"].fillna(""), strict=True))
    assert "NN-inpainting" in notes["repro_pathak_cited"] and "9.37" in notes["repro_pathak_cited"]
    for key in ("repro_bw", "repro_colour"):
        assert "L2 > mean L1" in notes[key] or "L2 > L1" in notes[key]
        row = table[table["key"] == key].iloc[0]
        assert row["l2"] > row["l1"]  # the inconsistency the note is about


def test_value_range_conversions_are_exact() -> None:
    assert convert(5.0, "l1", "[-1,1]") == 10.0
    assert convert(0.5, "l2", "[-1,1]") == 2.0
    assert convert(23.1, "psnr", "[-1,1]") == 23.1
    assert convert(0.6, "ssim", "[0,1]") == 0.6
    with pytest.raises(ValueError, match="no exact conversion"):
        convert(1.0, "l1", "[0,255]")


def test_print_baselines_shows_numbers_sources_and_notes() -> None:
    console = Console(record=True, width=250)
    print_baselines(console)
    text = console.export_text()
    for source, _, label, l1, *_ in EXPECTED:
        assert source.split()[0] in text and label in text and f"{l1:.2f}" in text
    assert "not MSE on [0,1]" in text and "not the context encoder" in text
