"""`cebench report`: results tables in, one report folder out (report.md, report.html, tables/, figures/, specs/)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import shlex
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

import cebench
from cebench.baselines import load_baselines
from cebench.config import DataConfig, Variant
from cebench.errors import UserError
from cebench.imageio import write_text
from cebench.metrics import MS_SSIM_MIN_SIDE
from cebench.report import features, figures, gallery, latex, tables
from cebench.report.document import Doc, html_page, markdown
from cebench.report.load import Study, fmt_value, load
from cebench.report.stats import METRICS, N_BOOT, Ablation, ablation, aggregate, beats_fill, metric_key, mixes_channels
from cebench.results import git_commit

REPO_ROOT = Path(cebench.__file__).resolve().parent.parent
METRICS_DOC, BASELINES_DOC = "docs/metrics.md", "docs/baselines.md"  # in the repository, beside cebench/
SUMMARY_METRICS = ("psnr", "ssim", "l1", "sharpness")


def report(inputs: list[Path], out: Path | None = None, *, n_boot: int = N_BOOT, console: Console | None = None) -> Path:
    """Write the report of the runs under `inputs` (runs/<spec>/ folders) into `out`; returns `out`."""
    console = console or Console(stderr=True)
    inputs = [Path(p) for p in inputs]
    study = load(inputs)
    out = Path(out) if out is not None else Path("reports") / "+".join(study.specs)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    agg = aggregate(study) if len(study.runs) else pd.DataFrame()
    ablations = [ablation(study, agg, spec, axis, n_boot=n_boot) for spec in dict.fromkeys(study.runs["spec"])
                 for axis in study.axes(spec)]
    shipped = {spec: _shipped_diff(study, spec) for spec in study.specs}
    for sub in ("tables", "figures"):  # nothing is written before every statistic has been computed
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "specs").mkdir(parents=True, exist_ok=True)
    doc = Doc(f"cebench report: {' + '.join(study.specs)}")
    doc.p("Regenerate this report (training, then the report) with:")
    doc.code(_regenerate(study, out, shipped))
    _copy_specs(study, out)
    _summary(doc, study, agg, ablations, shipped)
    if len(study.diverged):  # they have no scores: left out of every table and statistic, but never silently
        doc.p(f"{len(study.diverged)} run(s) diverged and are left out of every table and statistic below: "
              + "; ".join(f"`{r.run_id}` ({r.reason})" for r in study.diverged.itertuples()) + ".")
    _setup(doc, study)
    if len(agg):
        _comparison(doc, agg, out)
        for ab in ablations:
            _ablation_section(doc, study, agg, ab, out)
        _per_spec_figures(doc, study, agg, out, console)
    features.section(doc, study, out, n_boot=n_boot)
    _tuning(doc, study, out)
    _runs(doc, study, out)
    _methods(doc, study)
    write_text(out / "report.md", markdown(doc, out))
    write_text(out / "report.html", html_page(doc))
    write_text(out / "report.tex", latex.document(doc, out))
    console.print(f"report of {len(study.runs)} runs and {len(study.trials)} tuning trials ({', '.join(study.specs)})"
                  f" -> {out}/report.md, report.html, report.tex")
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Provenance


def _shipped_diff(study: Study, spec: str) -> tuple[Path, list[str]] | None:
    """How the runs of `spec` differ from the shipped ablations/<spec>.yaml (None when there is no such file)."""
    from cebench.spec import expand, load_spec

    path = next((p for p in (Path("ablations") / f"{spec}.yaml", REPO_ROOT / "ablations" / f"{spec}.yaml")
                 if p.is_file()), None)
    rows = study.runs[study.runs["spec"] == spec]
    if path is None or rows.empty:
        return None
    try:
        shipped = load_spec(path)
    except UserError:
        return None

    def norm(values: Iterable[Any]) -> list[str]:
        return sorted({"-" if v is None or (isinstance(v, float) and pd.isna(v)) else fmt_value(v) for v in values})

    plans = expand(shipped)
    diffs = []
    for f in Variant.model_fields:
        ours, theirs = norm(rows[f]), norm(getattr(p.variant, f) for p in plans)
        if ours != theirs:
            diffs.append(f"{f} {', '.join(ours)} (shipped: {', '.join(theirs)})")
    for f, field in DataConfig.model_fields.items():
        if field.exclude:  # how the data is read (stream), not which data: a row does not record it
            continue
        ours, theirs = norm(rows[f"data_{f}"]), norm([getattr(shipped.data, f)])
        if ours != theirs:
            diffs.append(f"data.{f} {', '.join(ours)} (shipped: {', '.join(theirs)})")
    if norm(rows["seed"]) != norm(shipped.seeds):
        diffs.append(f"seeds {', '.join(norm(rows['seed']))} (shipped: {', '.join(norm(shipped.seeds))})")
    return path, diffs


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _regenerate(study: Study, out: Path, shipped: dict[str, tuple[Path, list[str]] | None]) -> str:
    steps = []
    for folder in study.inputs:
        folder = folder.parent if folder.name == "results.csv" else folder
        opt = "" if folder.parent == Path("runs") else f" --out {shlex.quote(str(folder.parent))}"
        for spec in study.runs.loc[study.runs["input"] == str(folder), "spec"].unique():
            match = shipped.get(spec)
            source = _display(match[0]) if match and not match[1] else str(out / "specs" / f"{spec}.json")
            steps.append(f"cebench run {shlex.quote(source)}{opt}")
        if (folder / "tune_spec.json").is_file():
            steps.append(f"cebench tune {shlex.quote(str(out / 'specs' / f'{folder.name}.tune.json'))}{opt}")
    inputs = " ".join(shlex.quote(str(p)) for p in study.inputs)
    out_opt = "" if out == Path("reports") / "+".join(study.specs) else f" --out {shlex.quote(str(out))}"
    return " && \\\n  ".join([*steps, f"cebench report {inputs}{out_opt}"])


def _copy_specs(study: Study, out: Path) -> None:
    for folder in dict.fromkeys(study.runs["input"].tolist() + study.trials["input"].tolist()):
        for name, suffix in (("spec.json", ".json"), ("tune_spec.json", ".tune.json")):
            if (Path(folder) / name).is_file():
                shutil.copyfile(Path(folder) / name, out / "specs" / f"{Path(folder).name}{suffix}")


def _versions() -> str:
    names = ("torch", "numpy", "pandas", "scipy", "matplotlib")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def _values(series: pd.Series) -> str:
    return ", ".join(fmt_value(v) for v in dict.fromkeys(series.dropna().tolist())) or "unknown"


def _setup(doc: Doc, study: Study) -> None:
    runs = pd.concat([study.runs, study.trials], ignore_index=True)
    doc.h2("Data, hardware, software")
    items = []
    for spec, rows in runs.groupby("spec", sort=False):
        r = rows.iloc[0]
        source = f"image {'folder' if r['data_name'] == 'folder' else 'pack'} `{r['data_path']}`" \
            if r["data_name"] in ("folder", "pack") else \
            f"procedural landscapes (synthetic, generated by cebench), scene seed {fmt_value(r['data_seed'])}"
        items.append(f"**{spec}** data: {source}; {fmt_value(r['data_n_train'])} train / "
                     f"{fmt_value(r['data_n_val'])} val / {_values(rows['n_test'])} test images at "
                     f"{_values(rows['image_size'])} px; {_values(rows['epochs'])} epochs, batch "
                     f"{_values(rows['batch_size'])}, seeds {_values(rows['seed'])}; {len(rows)} runs")
    speed = runs["images_per_s"].median()
    items.append(f"Trained on: {_values(runs['device'])}; median {speed:.0f} training images/s; "
                 f"{runs['train_time_s'].sum() / 60:.1f} min of training in total")
    items.append(f"Trained with: torch {_values(runs['torch_version'])}, cebench {_values(runs['cebench_version'])}, "
                 f"commit `{_values(runs['git_commit'])}`; runs finished {runs['finished_at'].min()} to "
                 f"{runs['finished_at'].max()}")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    items.append(f"This report: made {now} on {platform.platform()} ({platform.machine()}, Python "
                 f"{platform.python_version()}; {_versions()}), cebench {cebench.__version__} at commit "
                 f"`{git_commit()}`; inputs {', '.join(f'`{p}`' for p in study.inputs)}")
    doc.ul(items)
    r = runs.iloc[0]
    doc.p(f"Metric convention of every cebench number here: {r['convention']}; value range {r['value_range']}, "
          f"region `{r['region']}` (the whole predicted region, including the overlap band). Per image, then averaged "
          "over the test set; PSNR is the mean of per-image PSNRs. Gray models are scored against the BT.601 luma of "
          "the ground truth, colour models in RGB and in luma (`luma_*`); where a spec has both, its colour runs are "
          f"shown on luma throughout. The full definitions are in `{METRICS_DOC}` of the cebench repository; the "
          f"published numbers' sources in `{BASELINES_DOC}`.")


def _summary(doc: Doc, study: Study, agg: pd.DataFrame, ablations: list[Ablation],
             shipped: dict[str, tuple[Path, list[str]] | None]) -> None:
    doc.h2("Summary")
    items = []
    for spec in study.specs:
        match = shipped.get(spec)
        rows = pd.concat([study.runs, study.trials], ignore_index=True)
        devices = _values(rows.loc[rows["spec"] == spec, "device"])
        if match and match[1]:
            items.append(f"**Reduced run** of `{spec}` on {devices}: differs from the shipped `{_display(match[0])}` "
                         f"in {'; '.join(match[1])}. Its numbers are not the paper-scale result.")
        elif match:
            items.append(f"`{spec}` on {devices}: as specified in the shipped `{_display(match[0])}`.")
        elif spec in set(study.trials["spec"]):
            items.append(f"`{spec}` on {devices}: a tuning study ({(study.trials['spec'] == spec).sum()} trials).")
        else:
            items.append(f"`{spec}` on {devices}: a custom spec (copied to `specs/{spec}.json`).")
        if len(agg) and spec in set(agg["spec"]):
            items += _against_references(agg, spec)
    for ab in ablations:
        for context in dict.fromkeys(p.context for p in ab.pairs):
            found = [p for p in ab.pairs if p.context == context and p.metric in SUMMARY_METRICS]
            where = "" if context == "-" else f" ({context})"
            parts = [f"{tables.HEADERS[p.metric]} {p.b} − {p.a} = {tables.num(p.diff, p.metric)} "
                     f"[{tables.num(p.boot_lo, p.metric)}, {tables.num(p.boot_hi, p.metric)}]: "
                     f"{tables.verdict(ab.axis, p)}" for p in found]
            items.append(f"`{ab.spec}` {ab.axis}{where}: " + "; ".join(parts))
    doc.ul(items)


def _against_references(agg: pd.DataFrame, spec: str) -> list[str]:
    """Plain statements: the data, and which trained variants do not beat the fill or the best classical method."""
    rows = agg[agg["spec"] == spec]
    luma = mixes_channels(agg, spec)
    data = "; ".join(dict.fromkeys(tables.data_name(r) for _, r in rows.iterrows()))
    items = [f"`{spec}` data: {data}." + (" Colour runs are reported on luma (the spec also has gray runs)."
                                          if luma else "")]
    below_fill: list[str] = []
    behind: list[str] = []
    ahead: list[str] = []
    for _, r in rows.iterrows():
        key = metric_key("psnr", r["channels"], luma)
        name = f"{r['variant']} ({tables.num(r[key], 'psnr')} dB)"
        if beats_fill(r, "psnr", luma) is False:
            below_fill.append(f"{name} vs fill only {tables.num(r[f'fill_{key}'], 'psnr')} dB")
        best = figures.best_classical(r, luma)
        if best is not None:
            (ahead if r[key] > r[f"{best}_{key}"] else behind).append(
                f"{name} vs {best} {tables.num(r[f'{best}_{key}'], 'psnr')} dB")
    if below_fill:
        items.append(f"**Not better than no model**: in `{spec}`, {'; '.join(below_fill)} (hole PSNR): these variants "
                     "do not beat the fill alone and are flagged in the tables.")
    if behind:
        items.append(f"**Not better than classical inpainting**: in `{spec}`, {'; '.join(behind)} (hole PSNR, the "
                     "best classical method on the same test images, no training).")
    elif ahead:
        items.append(f"`{spec}`: every trained variant beats the best classical inpainting method on the same test "
                     f"images in hole PSNR ({'; '.join(ahead)}).")
    return items


# ----------------------------------------------------------------------------------------------------------------------
# Sections


def _comparison(doc: Doc, agg: pd.DataFrame, out: Path) -> None:
    baselines = load_baselines()
    doc.h2("Comparison with published results")
    t = tables.comparison(agg, baselines)
    tables.write(t, out / "tables")
    doc.table(t)
    notes = [f"**{b['row_label']}** ({b['source']}, {b['table']}): {b['note']}" for _, b in baselines.iterrows()
             if isinstance(b["note"], str) and b["note"]]
    doc.p(f"Notes on the published numbers (from `cebench baselines`; data in `cebench/baselines.csv`, sources and "
          f"full citations in `{BASELINES_DOC}` of the cebench repository):")
    doc.ul(notes)
    t = tables.conventions(agg)
    tables.write(t, out / "tables")
    doc.table(t)


def _ablation_section(doc: Doc, study: Study, agg: pd.DataFrame, ab: Ablation, out: Path) -> None:
    doc.h2(f"Ablation: {ab.spec} / {ab.axis}")
    for t in (tables.levels(ab), tables.pairs(ab)):
        tables.write(t, out / "tables")
        doc.table(t)


def _per_spec_figures(doc: Doc, study: Study, agg: pd.DataFrame, out: Path, console: Console) -> None:
    for spec in agg["spec"].unique():
        luma = mixes_channels(agg, spec)
        on_luma = " Colour runs are shown on their luma scores, as in this spec's tables." if luma else ""
        doc.h2(f"Figures: {spec}")
        path = figures.means(study, agg, spec, luma, out / "figures" / f"means_{spec}.png")
        doc.figure(path, f"{spec}: each variant's mean over seeds (dot) with its 95% t-interval over seeds (line; none "
                   "for one seed), each seed's test-set mean (ticks), and the references on the same test images: "
                   "fill only (cross) and the classical method with the best PSNR (diamond). Points, not bars: the "
                   f"axes need not start at 0.{on_luma} Numbers: the CSV beside the figure.")
        curves = figures.curves(study, agg, spec, luma, out / "figures" / f"curves_{spec}.png")
        if curves:
            doc.figure(curves, f"{spec}: training losses and validation PSNR per epoch (line: mean over seeds; band: "
                       f"lowest to highest seed; from each run's history.csv).{on_luma}")
        console.print(f"[dim]{spec}: galleries, predicting again from each variant's saved weights")
        gallery.section(doc, study, agg, spec, luma, out)
        path = figures.sharpness(study, agg, spec, luma, out / "figures" / f"sharpness_{spec}.png")
        doc.figure(path, f"{spec}: per-image sharpness of the fill (Sobel gradient of prediction / of truth; below 1 "
                   "= blurrier; bar: mean). The paired table of a loss axis says whether a difference is significant."
                   + on_luma)


def _tuning(doc: Doc, study: Study, out: Path) -> None:
    if study.trials.empty and not study.tune_plots and not study.tune_tables:
        return
    doc.h2("Tuning")
    doc.p(f"{len(study.trials)} tuning trials (run ids `trial<N>`) are in the inputs; they are not aggregated above.")
    for csv in study.tune_tables:
        trials = pd.read_csv(csv)
        shown = trials[[c for c in trials.columns if not str(c).startswith(("datetime", "system_attrs"))]]
        cells = shown.head(20).astype(object).map(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
        t = tables.Table(f"tune_{csv.parent.name}_{csv.stem}", f"{csv.parent.name}: {csv.name}",
                         f"First {len(cells)} of {len(trials)} rows of `{csv}` (first 12 columns; all in the CSV).",
                         cells.iloc[:, :12], trials)
        tables.write(t, out / "tables")
        doc.table(t)
    for path in figures.copy_tuning(study, out / "figures"):
        doc.figure(path, f"tuning plot {path.stem.removeprefix('tune_')}")


def _runs(doc: Doc, study: Study, out: Path) -> None:
    if study.runs.empty:
        return
    t = tables.runs(study.runs)
    tables.write(t, out / "tables")
    doc.h2("Every run")
    doc.p("The per-run numbers every statistic above is computed from (also `tables/runs.csv`; per-image scores are in "
          "each run's `per_image.csv`).")
    if len(t.cells) <= 60:
        doc.table(t)


def _methods(doc: Doc, study: Study) -> None:
    doc.h2("How the statistics are computed")
    sides = sorted({int(v) // 2 for v in study.runs["image_size"]}) if len(study.runs) else []
    ms_ssim = ("MS-SSIM (five scales) is in `tables/runs.csv` and each run's per_image.csv." if
               "ms_ssim_mean" in study.runs else
               f"MS-SSIM is not reported: its five scales need a scored rectangle of {MS_SSIM_MIN_SIDE} px or more, and "
               f"the holes here are {', '.join(map(str, sides)) or 'smaller'} px.")
    doc.ul([
        "Over seeds: each run's test-set mean is one value; a grid point reports the mean over its seeds, the sample "
        "std (comparison table) or a 95% t-interval (ablation tables). One seed gives no interval.",
        f"Paired, per image: two levels of one axis with every other axis fixed share the test images and masks. "
        f"Per image, each level's score is averaged over its seeds; the differences b − a get a percentile bootstrap "
        f"95% CI of their mean ({N_BOOT:,} resamples, numpy RNG seed 0) and a two-sided Wilcoxon signed-rank test "
        "(scipy).",
        "Paired, per seed: runs with the same seed are paired; the per-seed differences of test-set means get a 95% "
        "t-interval. It carries training randomness, which the per-image interval cannot see.",
        "Significant: the bootstrap CI excludes 0 and, with two or more seeds, the seed CI excludes 0 on the same "
        "side. A level is called better only when the difference is also not 0 at the printed precision. Bold marks "
        "a level only when it is significantly better than every other level of its axis and beats the fill-only "
        "reference. No multiple-comparison correction: with many metrics and axes, expect some false positives at "
        f"95%. Wilcoxon p-values below {tables.P_FLOOR:.0e} are printed as that bound.",
        "Gray vs colour: in a spec with colour and gray runs, colour runs are shown and compared on their luma scores "
        "against the gray runs' scores, which are luma by construction.",
        "References on the same test images and holes, no training: the fill alone, and classical inpainting "
        "(scikit-image biharmonic; OpenCV Telea and Navier-Stokes, radius 3 px, on the 8-bit image), scored by the "
        f"same harness (`cebench/classical.py`; `{METRICS_DOC}`).",
        f"Metrics compared: {', '.join(METRICS)} (hole region). {ms_ssim} LPIPS, FID and KID need pretrained "
        "networks and are not computed by `cebench run`; `cebench score --perceptual` computes them where their "
        f"weights are on disk (`{METRICS_DOC}`).",
    ])
