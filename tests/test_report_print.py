"""What a report shows, checked against what it computes: figures against tables (colour vs gray), honest wording, the
LaTeX document compiled with pdflatex, the HTML printed to PDF by Chromium, and no citation of a file that is not there.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cebench.classical import CLASSICAL
from cebench.report import report
from cebench.report.stats import Paired
from cebench.report.tables import num, p_value, verdict
from tests.test_report import BASE, JITTER, scores_from_psnr, seed_noise, write_spec

REPO = Path(__file__).resolve().parent.parent
CLASSICAL_PSNR = {"biharmonic": 20.1, "telea": 20.3, "ns": 19.9}  # gray / luma; RGB runs' RGB values are 0.5 lower


def colour_vs_gray(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """Gray 0.6 dB ahead of colour's luma; colour's RGB PSNR is another 0.6 dB lower (a different number)."""
    joint = 0.4 * (point["loss"] == "joint")
    psnr = BASE + JITTER * 0.5 + seed_noise(seed) + joint
    if point["channels"] == "gray":
        return scores_from_psnr(psnr + 0.6)
    return scores_from_psnr(psnr - 0.6, luma=psnr)


def add_references(spec_dir: Path) -> None:
    """Classical and luma reference columns, as `cebench run` records them."""
    results = pd.read_csv(spec_dir / "results.csv")
    for method, value in CLASSICAL_PSNR.items():
        results[f"{method}_psnr_mean"] = np.where(results["channels"] == "rgb", value - 0.5, value)
        results[f"{method}_luma_psnr_mean"] = np.where(results["channels"] == "rgb", value, np.nan)
        results[f"{method}_l1_mean"] = 6.0
        results[f"{method}_ssim_mean"] = 0.45
    results["fill_luma_psnr_mean"] = np.where(results["channels"] == "rgb", 12.5, np.nan)
    results.to_csv(spec_dir / "results.csv", index=False)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    spec_dir = write_spec(root, "col", {"channels": ["rgb", "gray"], "loss": ["l2", "joint"]}, [0, 1], colour_vs_gray)
    add_references(spec_dir)
    return report([spec_dir], root / "out", n_boot=2000)


def parts(variant: str) -> frozenset[str]:
    return frozenset(variant.split(", "))


def test_figure_numbers_equal_the_table_cells(mixed: Path) -> None:
    means = pd.read_csv(mixed / "figures" / "means_col.csv")
    comparison = pd.read_csv(mixed / "tables" / "comparison.csv")
    ours = comparison[comparison["kind"] == "ours"].assign(
        variant=lambda t: t["method"].str.removeprefix("cebench col: ").str.replace(" (≤ fill)", "", regex=False))
    for axis in ("channels", "loss"):
        levels = pd.read_csv(mixed / "tables" / f"ablation_col_{axis}.csv")
        cells = (mixed / "tables" / f"ablation_col_{axis}.md").read_text()
        for _, row in means[means["kind"] == "variant"].iterrows():
            match = levels[[parts(f"{c}, {axis}={lv}") == parts(row["variant"]) for c, lv in
                            zip(levels["context"], levels["level"], strict=True)]]
            assert len(match) == 1, row["variant"]
            m = row["panel"]
            assert row["value"] == match[f"{m}"].iloc[0] and row["column"] == match[f"{m}_column"].iloc[0]
            assert (row["ci_lo"], row["ci_hi"]) == (match[f"{m}_lo"].iloc[0], match[f"{m}_hi"].iloc[0])
            assert f"{num(row['value'], m)} [{num(row['ci_lo'], m)}, {num(row['ci_hi'], m)}]" in cells
            if m in ("psnr", "ssim", "l1"):
                assert row["value"] == ours.set_index("variant").loc[row["variant"], m]
    sharp = pd.read_csv(mixed / "figures" / "sharpness_col.csv").query("statistic == 'mean'").set_index("variant")
    levels = pd.read_csv(mixed / "tables" / "ablation_col_loss.csv")
    for _, row in levels.iterrows():  # the bar of each box is the table's value (mean over images = over seeds)
        variant = f"channels={row['context'].split('=')[1]}, loss={row['level']}"
        assert sharp.loc[variant, "value"] == pytest.approx(row["sharpness"], rel=1e-12)
        assert sharp.loc[variant, "column"] == row["sharpness_column"]
    colour = means[(means["kind"] == "variant") & means["variant"].str.contains("channels=rgb")]
    assert set(colour["column"]) == {"luma_psnr", "luma_ssim", "luma_l1", "luma_sharpness"}  # like the gray runs
    refs = means[means["kind"] == "classical"]
    colour_refs = refs[refs["variant"].str.contains("channels=rgb")]
    assert set(colour_refs["column"]) == {"telea_luma_psnr"}  # only what was recorded on luma: no RGB stand-in
    assert refs.query("panel == 'psnr'")["value"].tolist() == [20.3] * 4
    curves = pd.read_csv(mixed / "figures" / "curves_col.csv")
    val = curves[curves["panel"] == "val_psnr"]
    assert not val["variant"].str.contains("channels=rgb").any()  # no luma history here: left out, not mixed in


def test_every_figure_is_vector_and_raster_with_its_numbers(mixed: Path) -> None:
    for png in (mixed / "figures").glob("*.png"):
        assert png.with_suffix(".pdf").is_file() and png.with_suffix(".csv").is_file(), png.name


def test_wording_never_overclaims() -> None:
    assert p_value(8.3e-26) == "< 1e-10" and p_value(0.01234) == "0.012" and p_value(1.0) == "1"
    assert num(-0.001, "psnr") == "0.00" and num(-0.006, "psnr") == "-0.01" and num(float("nan"), "l1") == "-"
    tiny = Paired("s", "loss", "-", "l2", "joint", "psnr", 40, -0.004, -0.006, -0.002, 1e-5, 3, -0.005, -0.003)
    assert tiny.sign == -1 and tiny.winner is None and verdict("loss", tiny) == "no difference at the printed precision"
    real = Paired("s", "loss", "-", "l2", "joint", "psnr", 40, -0.5, -0.6, -0.4, 1e-5, 3, -0.55, -0.45)
    assert real.winner == "l2" and verdict("loss", real) == "loss=l2 better"


def test_a_variant_below_the_fill_is_flagged_never_bold(tmp_path: Path) -> None:
    def below(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        return scores_from_psnr(BASE - 10.0 + (point["loss"] == "joint") + JITTER * 0.1 + seed_noise(seed))

    out = report([write_spec(tmp_path, "bad", {"loss": ["l2", "joint"]}, [0, 1], below)], tmp_path / "out",
                 n_boot=2000)
    md = (out / "tables" / "ablation_bad_loss.md").read_text()
    joint = next(line for line in md.splitlines() if line.startswith("| joint"))
    assert "(≤ fill)" in joint and "**" not in joint.split("|")[4]  # significantly ahead of l2, but not of the fill
    summary = (out / "report.md").read_text().split("## Data")[0]
    assert "Not better than no model" in summary and "procedural landscapes (synthetic), 40 test images, 32 px" in summary


def test_summary_says_when_classical_inpainting_is_ahead(mixed: Path) -> None:
    summary = (mixed / "report.md").read_text().split("## Data")[0]
    assert "Not better than classical inpainting" in summary and "telea 20.30 dB" in summary
    comparison = pd.read_csv(mixed / "tables" / "comparison.csv")
    references = comparison[comparison["kind"] == "reference"]["method"].tolist()
    for method in CLASSICAL:
        assert sum(CLASSICAL[method] in m for m in references) == 2  # colour and gray test images


def test_report_cites_only_files_in_the_repository(mixed: Path) -> None:
    for name in ("report.md", "report.html", "report.tex"):
        text = (mixed / name).read_text()
        assert "DESIGN" not in text and "third-party re-implementation" not in text
        for path in set(re.findall(r"(?<![\w/.])(?:docs|cebench|ablations|reports)/[\w./-]+\.(?:md|csv|py|yaml|json)",
                                   text)):
            assert (REPO / path).is_file(), (name, path)


def _pdflatex(folder: Path, name: str) -> str:
    for _ in range(2):  # the second pass settles references
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", name], cwd=folder,
                              capture_output=True, text=True, timeout=300)
    log = (folder / Path(name).with_suffix(".log")).read_text(errors="replace")
    assert done.returncode == 0 and not re.search(r"^! ", log, re.M), log[-3000:]
    return log


def _overfull(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (Debian: texlive-latex-base texlive-latex-recommended)")
def test_report_tex_compiles_and_every_table_fits_the_text_width(mixed: Path, tmp_path: Path) -> None:
    log = _pdflatex(mixed, "report.tex")
    assert all(width <= 1.0 for width in _overfull(log)), _overfull(log)
    assert (mixed / "report.pdf").stat().st_size > 10_000
    # Each fragment on its own, in a plain 10 pt article (345 pt text width), as a paper would include it.
    wrapper = "\n".join([r"\documentclass[10pt]{article}", r"\usepackage{booktabs,array}", r"\begin{document}",
                         *(rf"\input{{{p.as_posix()}}}" for p in sorted((mixed / "tables").glob("*.tex"))),
                         r"\end{document}", ""])
    (tmp_path / "fragments.tex").write_text(wrapper)
    log = _pdflatex(tmp_path, "fragments.tex")
    assert all(width <= 1.0 for width in _overfull(log)), _overfull(log)


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None or shutil.which("pdftotext") is None,
                    reason="needs Chromium and pdftotext (Debian: chromium, poppler-utils) to print the HTML")
def test_printed_html_keeps_every_column(mixed: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--print-to-pdf={pdf}",
                    (mixed / "report.html").as_uri()], capture_output=True, timeout=180, check=False)
    assert pdf.is_file() and pdf.stat().st_size > 10_000
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    words = set(text.split())
    page = (mixed / "report.html").read_text()
    printed = re.sub(r'<div class="screen-only">.*?</div>\n<div class="print-only">', "", page, flags=re.S)
    tables = re.findall(r"<table>(.*?)</table>", printed, re.S)
    assert len(tables) >= 6
    for table in tables:
        header = re.findall(r"<th>(.*?)</th>", table)
        last = [re.findall(r"<td[^>]*>(?:<strong>)?(.*?)(?:</strong>)?</td>", row)[-1]
                for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]]
        for cell in [*header, *last]:  # the last column is the first to be cut off
            for word in html.unescape(cell).split():
                assert word in words or any(word in w for w in words), (word, header[-1])
