"""`cebench report` on synthetic results with known effects (statistics recomputed here independently), its outputs
(self-contained HTML, LaTeX, figures), its user errors, and one end-to-end report of a real tiny run."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import stats

from cebench.config import Spec, Variant
from cebench.errors import UserError
from cebench.report import report
from cebench.results import make_row
from cebench.run import run_spec
from tests.conftest import TINY, TINY_DATA

N_IMAGES = 40
Scores = Callable[[dict[str, Any], int], dict[str, np.ndarray]]
BASE = np.random.default_rng(1).normal(20.0, 2.0, N_IMAGES)  # per-image PSNR of the reference level


def scores_from_psnr(psnr: np.ndarray, ssim_shift: float = 0.0, luma: np.ndarray | None = None) -> dict[str, np.ndarray]:
    out = {"l1": 80 * 10 ** (-psnr / 20), "l2": 100 * 10 ** (-psnr / 10), "psnr": psnr,
           "ssim": 0.5 + 0.01 * (psnr - 20) + ssim_shift, "sharpness": 0.8 + 0.001 * psnr}
    if luma is not None:
        out |= {f"luma_{k}": v for k, v in scores_from_psnr(luma).items()}
    return out


FILL = {"fill_l1_mean": 30.0, "fill_l2_mean": 6.0, "fill_psnr_mean": 12.0, "fill_ssim_mean": 0.2}  # a mean-colour fill


def write_spec(root: Path, name: str, axes: dict[str, list[Any]], seeds: list[int], scores: Scores,
               value_range: str = "[0,1]") -> Path:
    """A spec folder as `cebench run` writes it: results.csv (real `make_row` rows) and per-run folders."""
    spec_dir = root / name
    rows = []
    for values in itertools.product(*axes.values()):
        point = dict(zip(axes, values, strict=True))
        for seed in seeds:
            run_id = "-".join(f"{k}={v}" for k, v in point.items()) + f"-seed{seed}"
            per = scores(point, seed)
            run_dir = spec_dir / run_id
            run_dir.mkdir(parents=True)
            pd.DataFrame({"test_index": range(N_IMAGES), **per}).to_csv(run_dir / "per_image.csv", index=False)
            pd.DataFrame({"epoch": [1, 2], "loss_rec": [0.2, 0.1], "loss_adv": [0.7, 0.69], "loss_d": [1.4, 1.3],
                          "val_psnr": [18.0, 19.0]}).to_csv(run_dir / "history.csv", index=False)
            tile = np.full((3 * 18 + 2, 8 * 18 + 2, 3), 255, np.uint8)
            tile[2:-2, 2:-2] = np.random.default_rng(seed).integers(0, 255, (3 * 18 - 2, 8 * 18 - 2, 3))
            Image.fromarray(tile).save(run_dir / "samples.png")
            summary = {f"{k}_{s}": float(f(v)) for k, v in per.items() for s, f in
                       (("mean", np.mean), ("std", lambda x: np.std(x, ddof=1)))}
            fields = {k: v for k, v in point.items() if k in Variant.model_fields}
            row = make_row(spec=name, run_id=run_id, variant=Variant(**{**TINY, **fields}), data=TINY_DATA, seed=seed,
                           summary=summary, n_test=N_IMAGES, device=torch.device("cpu"), train_time_s=1.0,
                           images_per_s=100.0, extra={**FILL,
                                                      **{f"axis_{k}": v for k, v in point.items()}})
            rows.append(row | {"value_range": value_range})
    pd.DataFrame(rows).to_csv(spec_dir / "results.csv", index=False)
    return spec_dir


JITTER = np.random.default_rng(2).normal(0.0, 0.3, N_IMAGES)  # per-image variation of an effect


def seed_noise(seed: int) -> float:
    return 0.05 * np.sin(seed + 1.0)  # small run-to-run variation shared by every image


def effect(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """loss=joint is 1 dB better than l2 on average, on every image (1 +- 0.9 dB) and seed."""
    if point["loss"] == "joint":
        return scores_from_psnr(BASE + 1.0 + JITTER + 1.5 * seed_noise(seed))
    return scores_from_psnr(BASE + seed_noise(seed))


def noise(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    """loss=joint differs from l2 only by zero-mean per-image noise: no real effect."""
    jitter = np.random.default_rng(7).normal(0, 1.0, N_IMAGES)
    return scores_from_psnr(BASE + seed_noise(seed) + (jitter - jitter.mean() if point["loss"] == "joint" else 0.0))


@pytest.fixture(scope="module")
def effect_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("effect")
    return report([write_spec(root, "syn", {"loss": ["l2", "joint"]}, [0, 1, 2], effect)], root / "out")


def paired_row(out: Path, name: str, metric: str, context: str = "-") -> pd.Series:
    table = pd.read_csv(out / "tables" / f"paired_{name}.csv")
    return table[(table["metric"] == metric) & (table["context"].astype(str) == context)].iloc[0]


def test_statistics_match_an_independent_recomputation(effect_report: Path) -> None:
    spec_dir = effect_report.parent / "syn"
    results = pd.read_csv(spec_dir / "results.csv")
    per = {lv: np.mean([pd.read_csv(spec_dir / f"loss={lv}-seed{s}" / "per_image.csv")["psnr"] for s in (0, 1, 2)],
                       axis=0) for lv in ("l2", "joint")}
    d = per["joint"] - per["l2"]
    row = paired_row(effect_report, "syn_loss", "psnr")
    assert row["diff"] == pytest.approx(d.mean()) and row["diff"] == pytest.approx(1.0, abs=0.15)
    assert row["p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-9, abs=0)  # 2 / 2^40: one-sided is half
    # cebench's endpoints (10,000 resamples) spread by sd 0.0009 (lower) and 0.0012 (upper) over RNG seeds 0-99; scipy's
    # with 100,000 resamples by a third of that: 0.005 is about 4 sd of their difference.
    boot = stats.bootstrap((d,), np.mean, method="percentile", n_resamples=100_000, rng=np.random.default_rng(5))
    assert row["boot_lo"] == pytest.approx(boot.confidence_interval.low, abs=0.005)
    assert row["boot_hi"] == pytest.approx(boot.confidence_interval.high, abs=0.005)
    by_seed = results.pivot_table(index="seed", columns="axis_loss", values="psnr_mean")
    seed_d = (by_seed["joint"] - by_seed["l2"]).to_numpy()
    lo, hi = stats.t.interval(0.95, len(seed_d) - 1, loc=seed_d.mean(), scale=stats.sem(seed_d))
    assert (row["seed_lo"], row["seed_hi"]) == pytest.approx((lo, hi))
    assert bool(row["significant"]) and row["winner"] == "joint"
    levels = pd.read_csv(effect_report / "tables" / "ablation_syn_loss.csv").set_index("level")
    for level, g in results.groupby("axis_loss"):
        lo, hi = stats.t.interval(0.95, len(g) - 1, loc=g["psnr_mean"].mean(), scale=stats.sem(g["psnr_mean"]))
        assert levels.loc[str(level), "psnr"] == pytest.approx(g["psnr_mean"].mean())
        assert (levels.loc[str(level), "psnr_lo"], levels.loc[str(level), "psnr_hi"]) == pytest.approx((lo, hi))
    comparison = pd.read_csv(effect_report / "tables" / "comparison.csv")
    ours = comparison[comparison["kind"] == "ours"].set_index("method")
    assert ours.loc["cebench syn: loss=joint", "psnr_sd"] == pytest.approx(
        results.loc[results["axis_loss"] == "joint", "psnr_mean"].std(ddof=1))


def test_only_the_significantly_best_level_is_bold(effect_report: Path) -> None:
    md = (effect_report / "tables" / "ablation_syn_loss.md").read_text()
    joint = next(line for line in md.splitlines() if line.startswith("| joint"))
    l2 = next(line for line in md.splitlines() if line.startswith("| l2"))
    assert joint.count("**") == 2 * 4  # L1, L2, PSNR, SSIM; sharpness has no better direction
    assert "**" not in l2
    tex = (effect_report / "tables" / "ablation_syn_loss.tex").read_text()
    assert r"\textbf{" in tex


def test_pure_noise_is_not_significant(tmp_path: Path) -> None:
    out = report([write_spec(tmp_path, "noisy", {"loss": ["l2", "joint"]}, [0, 1], noise)], tmp_path / "out")
    row = paired_row(out, "noisy_loss", "psnr")
    assert row["diff"] == pytest.approx(0.0, abs=1e-9) and row["boot_lo"] < 0 < row["boot_hi"]
    assert not row["significant"] and row["verdict"] == "no difference at the printed precision"
    md = (out / "tables" / "ablation_noisy_loss.md").read_text().splitlines()
    assert not [line for line in md if line.startswith(("| l2", "| joint")) and "**" in line]


def test_three_levels_bold_needs_wins_against_every_other_level(tmp_path: Path) -> None:
    def three(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        shift = {8: 0.0, 16: 0.5, 32: 1.0}[point["width"]]
        jitter = np.random.default_rng(3).normal(0, 0.01, N_IMAGES)
        tie = (jitter - jitter.mean()) * (point["width"] == 32)  # 16 and 32 tie on SSIM (zero-mean difference)
        ssim = {8: -0.05, 16: 0.0, 32: 0.0}[point["width"]] + tie - 0.01 * shift
        return scores_from_psnr(BASE + JITTER * shift + seed_noise(seed) * (1 + shift) + shift, ssim_shift=ssim)

    out = report([write_spec(tmp_path, "three", {"width": [8, 16, 32]}, [0, 1], three)], tmp_path / "out")
    levels = pd.read_csv(out / "tables" / "ablation_three_width.csv")
    assert [str(v) for v in levels["level"]] == ["8", "16", "32"]
    md = (out / "tables" / "ablation_three_width.md").read_text().splitlines()
    rows = {w: [c.strip() for c in next(x for x in md if x.startswith(f"| {w} ")).strip("|").split("|")]
            for w in (8, 16, 32)}
    assert rows[32][4].startswith("**")  # PSNR: 32 beats both 8 and 16
    assert not any(rows[w][5].startswith("**") for w in rows)  # SSIM: the best does not beat the runner-up
    pairs = pd.read_csv(out / "tables" / "paired_three_width.csv")
    assert len(pairs) == 3 * 5  # every pair of levels, every metric


def test_channels_axis_compares_luma_with_gray(tmp_path: Path) -> None:
    def colour(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
        if point["channels"] == "gray":
            return scores_from_psnr(BASE + seed_noise(seed) + 2.0)
        return scores_from_psnr(BASE + seed_noise(seed) + 9.0, luma=BASE + seed_noise(seed))

    out = report([write_spec(tmp_path, "col", {"channels": ["rgb", "gray"]}, [0, 1], colour)], tmp_path / "out")
    row = paired_row(out, "col_channels", "psnr")
    assert row["diff"] == pytest.approx(2.0)  # gray - luma(rgb), not gray - rgb (-7)
    levels = pd.read_csv(out / "tables" / "ablation_col_channels.csv").set_index("level")
    assert levels.loc["rgb", "psnr_column"] == "luma_psnr" and levels.loc["gray", "psnr_column"] == "psnr"
    assert "luma" in (out / "tables" / "ablation_col_channels.md").read_text()


def test_value_range_conversions(effect_report: Path) -> None:
    conv = pd.read_csv(effect_report / "tables" / "conventions.csv")
    assert np.allclose(conv["l1_pm1"], 2 * conv["l1"]) and np.allclose(conv["l2_pm1"], 4 * conv["l2"])


def test_html_is_self_contained_and_embeds_every_figure(effect_report: Path) -> None:
    page = (effect_report / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", page)
    assert "<link" not in page and "<script" not in page
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    figures = sorted((effect_report / "figures").glob("*.png"))
    assert len(images) == len(figures) >= 3 and all(s.startswith("data:image/png;base64,") for s in images)
    md = (effect_report / "report.md").read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (effect_report / link).is_file()
    for png in figures:  # vector PDF and the plotted numbers beside every figure; PNG at 200 dpi or more
        assert png.with_suffix(".pdf").read_bytes().startswith(b"%PDF") and png.with_suffix(".csv").is_file()
        dpi = Image.open(png).info["dpi"]
        assert min(dpi) >= 199.9 and Image.open(png).size[0] / dpi[0] <= 7.01  # at most an article's two columns


def test_latex_tables_look_compilable(effect_report: Path) -> None:
    """Structure only (tests/test_report_print.py compiles them where pdflatex is installed)."""
    column = r">\{\\raggedright\\arraybackslash\}p\{\d+pt\}|[lr]"
    for tex in [*(effect_report / "tables").glob("*.tex"), effect_report / "report.tex"]:
        text = tex.read_text()
        for spec, body in re.findall(r"\\begin\{tabular\}\{@\{\}(.*?)@\{\}\}\n(.*?)\\end\{tabular\}\n", text, re.S):
            cols = len(re.findall(column, spec))
            rows = [x for x in body.splitlines() if x.endswith(r"\\") and not x.startswith(r"\begin")]
            assert rows and all(row.replace(r"\&", "").count("&") == cols - 1 for row in rows), (tex.name, spec)
        assert not re.search(r"(?<!\\)[%_#]", "\n".join(
            x for x in text.splitlines() if not x.startswith(("%", r"\includegraphics")))), tex.name
        plain = text.replace("\\\\", "")
        assert plain.count("{") - plain.count(r"\{") == plain.count("}") - plain.count(r"\}"), tex.name


def test_report_states_provenance_and_regeneration(effect_report: Path) -> None:
    md = (effect_report / "report.md").read_text()
    assert "cebench run " in md and "cebench report " in md
    for fact in ("torch", "commit", "cpu", "landscapes", "Python"):
        assert fact in md, fact
    assert (effect_report / "specs").is_dir()


def test_bad_inputs_are_one_line_user_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"no results.csv \(run `cebench run SPEC` first\)") as e:
        report([empty], tmp_path / "out")
    with pytest.raises(UserError, match="no such directory"):
        report([tmp_path / "nope"], tmp_path / "out")
    a = write_spec(tmp_path, "a", {"loss": ["l2"]}, [0], effect)
    b = write_spec(tmp_path, "b", {"loss": ["l2"]}, [0], effect, value_range="[-1,1]")
    with pytest.raises(UserError, match="incompatible metric conventions") as e2:
        report([a, b], tmp_path / "out")
    (a / "loss=l2-seed0" / "per_image.csv").rename(a / "moved.csv")
    with pytest.raises(UserError, match=r"per_image\.csv"):
        report([a], tmp_path / "out")
    (a / "loss=l2-seed0").rename(a / "gone")
    with pytest.raises(UserError, match="run folder missing") as e3:
        report([a], tmp_path / "out")
    for err in (e, e2, e3):
        assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_several_inputs_make_one_report(tmp_path: Path) -> None:
    a = write_spec(tmp_path, "one", {"loss": ["l2", "joint"]}, [0], effect)
    b = write_spec(tmp_path, "two", {"channels": ["rgb", "gray"]}, [0], effect_by_channel)
    out = report([a, b], tmp_path / "both")
    assert {p.name for p in (out / "tables").glob("ablation_*.csv")} == {"ablation_one_loss.csv",
                                                                          "ablation_two_channels.csv"}
    ours = pd.read_csv(out / "tables" / "comparison.csv").query("kind == 'ours'")
    assert len(ours) == 4


def test_a_tuning_study_gets_its_trials_and_plots(tmp_path: Path) -> None:
    tune = write_spec(tmp_path, "tune", {"loss": ["joint"]}, [0], effect)
    results = pd.read_csv(tune / "results.csv").assign(run_id=["trial0"])
    results.to_csv(tune / "results.csv", index=False)
    (tune / "loss=joint-seed0").rename(tune / "trial0")
    pd.DataFrame({"number": [0], "value": [21.5], "params_lr_g": [1e-3]}).to_csv(tune / "trials.csv", index=False)
    (tune / "plots").mkdir()
    Image.new("RGB", (400, 300), "white").save(tune / "plots" / "history.png")
    runs = write_spec(tmp_path, "grid", {"loss": ["l2", "joint"]}, [0], effect)
    out = report([runs, tune], tmp_path / "out")
    md = (out / "report.md").read_text()
    assert "## Tuning" in md and "figures/tune_tune_history.png" in md and "21.5" in md
    ours = pd.read_csv(out / "tables" / "comparison.csv").query("kind == 'ours'")
    assert list(ours["method"]) == ["cebench grid: loss=l2", "cebench grid: loss=joint"]  # trials not aggregated


def effect_by_channel(point: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    psnr = BASE + seed_noise(seed)
    return scores_from_psnr(psnr, luma=psnr) if point["channels"] == "rgb" else scores_from_psnr(psnr)


@pytest.mark.slow
def test_end_to_end_on_a_real_tiny_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = Spec(name="tiny", preset="landscape2023", data=TINY_DATA, overrides={**TINY, "overlap": 2},
                axes={"loss": ["l2", "joint"]}, seeds=[0], epochs=2, batch_size=16)
    run_spec(spec, tmp_path / "runs", torch.device("cpu"))
    monkeypatch.chdir(tmp_path)
    out = report([Path("runs/tiny")])
    assert out == Path("reports/tiny")
    for name in ("report.md", "report.html", "tables/comparison.csv", "tables/comparison.tex",
                 "tables/ablation_tiny_loss.md", "tables/paired_tiny_loss.csv", "figures/gallery_tiny_1.png",
                 "figures/gallery_tiny_2.pdf", "figures/grid_tiny.png", "figures/zoom_tiny.png", "report.tex",
                 "figures/curves_tiny.png", "figures/sharpness_tiny.png", "figures/means_tiny.png"):
        assert (out / name).is_file(), name
    # Galleries predict again from the saved weights: the scores shown are the scores the run recorded.
    for n in (1, 2):
        shown = pd.read_csv(out / "figures" / f"gallery_tiny_{n}.csv")
        assert list(shown["pick"]) == ["best", "median", "worst"]
        assert shown["shown"].to_numpy() == pytest.approx(shown["per_image_csv"].to_numpy(), abs=1e-4)
        assert shown["shown"].is_monotonic_decreasing
    grid = pd.read_csv(out / "figures" / "grid_tiny.csv")
    assert {"biharmonic", "telea", "ns", "loss=l2", "loss=joint"} <= set(grid["method"])
    assert "zoom_tiny" not in (out / "report.tex").read_text() and "zoom_tiny" in (out / "report.md").read_text()
    md = (out / "report.md").read_text()
    assert "cebench report runs/tiny" in md and "Pathak et al. 2016" in md and "9.37" in md
    results = pd.read_csv("runs/tiny/results.csv")
    ours = pd.read_csv(out / "tables" / "comparison.csv").query("kind == 'ours'")
    assert sorted(ours["psnr"]) == pytest.approx(sorted(results["psnr_mean"]))
    # A table written before a variant field existed (here lr_scaling) still reports: the field took its default.
    results.drop(columns=["lr_scaling"]).to_csv("runs/tiny/results.csv", index=False)
    older = report([Path("runs/tiny")], Path("reports/older"))
    assert (older / "report.html").is_file()


def test_a_reduced_run_of_a_shipped_spec_lists_how_it_differs(tmp_path: Path) -> None:
    """Runs named after ablations/quickstart.yaml: the report says which fields were reduced, and only real ones."""
    folder = write_spec(tmp_path, "quickstart", {"loss": ["l2", "joint"]}, [0, 1], effect)
    md = (report([folder], tmp_path / "out") / "report.md").read_text()
    assert "**Reduced run** of `quickstart`" in md
    assert "image_size 32" in md and "data.n_train 64" in md
    assert "data.stream" not in md  # how data is read is not recorded in a row, so it cannot differ


def test_no_figure_text_is_cut_at_the_edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every title, label and legend of every figure (galleries included) lies inside its figure."""
    from cebench.report import figures, gallery

    clipped: list[str] = []
    save = figures.save

    def checked_save(fig: Any, png: Path, numbers: pd.DataFrame) -> Path:
        clipped.extend(f"{png.name}: {text!r}" for text in figures.clipped_texts(fig))
        return save(fig, png, numbers)

    monkeypatch.setattr(gallery, "save", checked_save)
    monkeypatch.setattr(figures, "save", checked_save)
    spec = Spec(name="a-long-spec-name-for-titles", preset="landscape2023", data=TINY_DATA,
                overrides={**TINY, "overlap": 2}, axes={"channels": ["rgb", "gray"], "loss": ["l2", "joint"]},
                seeds=[0], epochs=1, batch_size=16)
    run_spec(spec, tmp_path / "runs", torch.device("cpu"))
    report([tmp_path / "runs" / spec.name], tmp_path / "out")
    assert len(list((tmp_path / "out" / "figures").glob("gallery_*.png"))) == 4
    assert not clipped, clipped
