"""The report's "Features" section: what each grid point's encoder learned (`cebench probe`'s probe.csv), with the
statistics of the inpainting ablations, and Pathak's published Table 1 as a labelled reference.

- Per grid point, task and probe: mean test accuracy over seeds with a 95% t-interval (one seed: its Wilson interval).
- Paired, per image: each grid point's correctness (0/1) per test image averaged over its seeds; the differences of two
  grid points get the bootstrap CI and Wilcoxon test of `cebench.report.stats`, and runs paired by seed a t-interval.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from cebench.probe.published import SOURCE, TABLE1
from cebench.probe.runs import PREDICTIONS_CSV, PROBE_CSV
from cebench.report import tables
from cebench.report.document import Doc
from cebench.report.load import Study
from cebench.report.stats import N_BOOT, Paired, bootstrap_ci, t_interval, wilcoxon_p

PIXELS = "raw pixels"


def load_probes(study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every input's probe.csv (rows labelled by grid point) and per-image predictions, or empty frames."""
    frames, preds = [], []
    labels = dict(zip(zip(study.runs["spec"], study.runs["run_id"], strict=True), study.runs["variant"], strict=True))
    for folder in dict.fromkeys(study.runs["input"]):
        if not (Path(folder) / PROBE_CSV).is_file():
            continue
        table = pd.read_csv(Path(folder) / PROBE_CSV)
        pixels = table["run_id"].astype(str).str.startswith("pixels-")
        table["variant"] = [f"{PIXELS} ({layer}, {size:g} px)" if px else labels.get((spec, run), run)
                            for px, spec, run, layer, size in zip(pixels, table["spec"], table["run_id"],
                                                                  table["layer"], table["image_size"], strict=True)]
        frames.append(table)
        p = pd.read_csv(Path(folder) / PREDICTIONS_CSV)
        preds.append(p.assign(spec=table["spec"].iloc[0], correct=(p["label"] == p["prediction"]).astype(float)))
    if not frames:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(frames, ignore_index=True), pd.concat(preds, ignore_index=True)


def levels(probes: pd.DataFrame) -> pd.DataFrame:
    """One row per (spec, task, kind, layer, grid point): accuracy over seeds with its interval."""
    rows = []
    keys = ["spec", "task", "kind", "layer", "variant"]
    for key, group in probes.groupby(keys, sort=False):
        acc = group["accuracy"].to_numpy(dtype=float)
        lo, hi = t_interval(acc) if len(acc) > 1 else (group["ci_lo"].iloc[0], group["ci_hi"].iloc[0])
        rows.append({**dict(zip(keys, key, strict=True)), "accuracy": acc.mean(), "lo": lo, "hi": hi,
                     "interval": "t over seeds" if len(acc) > 1 else "Wilson (test images)", "n_seeds": len(acc),
                     "chance": group["chance"].iloc[0], "run_ids": list(group["run_id"]), "seeds": list(group["seed"]),
                     "n_test": int(group["probe_n_test"].iloc[0])})
    return pd.DataFrame(rows)


def compare(lv: pd.DataFrame, preds: pd.DataFrame, n_boot: int = N_BOOT) -> list[Paired]:
    """Every pair of grid points (not the raw-pixel rows) per spec, task, kind and layer."""
    out = []
    runs = lv[~lv["variant"].str.startswith(PIXELS)]
    for (spec, task, kind, layer), group in runs.groupby(["spec", "task", "kind", "layer"], sort=False):
        mine = preds[(preds["spec"] == spec) & (preds["task"] == task) & (preds["kind"] == kind)
                     & (preds["layer"] == layer)]
        per_run = {run: g.set_index("test_index")["correct"] for run, g in mine.groupby("run_id")}
        for (_, a), (_, b) in combinations(group.iterrows(), 2):
            sa = pd.concat([per_run[r] for r in a["run_ids"]], axis=1).mean(axis=1)
            sb = pd.concat([per_run[r] for r in b["run_ids"]], axis=1).mean(axis=1)
            d = (sb - sa).to_numpy(dtype=float)
            lo, hi = bootstrap_ci(d, n_boot)
            by_seed_a = {s: per_run[r].mean() for s, r in zip(a["seeds"], a["run_ids"], strict=True)}
            by_seed_b = {s: per_run[r].mean() for s, r in zip(b["seeds"], b["run_ids"], strict=True)}
            common = sorted(set(by_seed_a) & set(by_seed_b))
            seed_lo, seed_hi = t_interval(np.array([by_seed_b[s] - by_seed_a[s] for s in common]))
            out.append(Paired(str(spec), "grid point", f"{task}, {kind} {layer}", a["variant"], b["variant"], "accuracy",
                              len(d), float(d.mean()), lo, hi, wilcoxon_p(d), len(common), seed_lo, seed_hi))
    return out


def _pct(value: float) -> str:
    return "-" if pd.isna(value) else f"{100 * value:.1f}"


def level_table(lv: pd.DataFrame) -> tables.Table:
    cells = [[r["spec"], r["variant"], r["task"], f"{r['kind']} {r['layer']}", str(r["n_seeds"]),
              f"{_pct(r['accuracy'])} [{_pct(r['lo'])}, {_pct(r['hi'])}]", _pct(r["chance"]), r["interval"]]
             for _, r in lv.iterrows()]
    columns = ["spec", "encoder (grid point)", "task", "probe", "seeds", "test accuracy % [95% CI]", "chance %",
               "interval"]
    caption = ("Linear probe: logistic regression on the frozen encoder's features of the whole image, L2 strength "
               "chosen on the validation split. Fine-tune: encoder + linear head trained for a fixed budget. Raw pixels: "
               "the same linear probe on the image itself. Chance: always answering the most frequent training class. "
               "The interval is a 95% t-interval over seeds, or with one seed the Wilson interval over test images.")
    data = lv.drop(columns=["run_ids", "seeds"])
    return tables.Table("features_accuracy", "Features: probe accuracy per encoder", caption,
                        pd.DataFrame(cells, columns=columns), data)


def pair_table(pairs: list[Paired]) -> tables.Table:
    cells, data = [], []
    for p in pairs:
        verdict = ("no significant difference" if p.sign == 0 else
                   f"{p.b if p.sign > 0 else p.a} better" + (" (1 seed: test-image noise only)" if p.n_seeds < 2 else ""))
        seed_ci = "-" if pd.isna(p.seed_lo) else f"[{_pct(p.seed_lo)}, {_pct(p.seed_hi)}]"
        cells.append([p.spec, p.context, f"{p.b} − {p.a}", _pct(p.diff), f"[{_pct(p.boot_lo)}, {_pct(p.boot_hi)}]",
                      f"{p.p_wilcoxon:.2g}", str(p.n_images), seed_ci, str(p.n_seeds), verdict])
        data.append({**{k: getattr(p, k) for k in p.__dataclass_fields__}, "significant": p.sign != 0,
                     "verdict": verdict})
    columns = ["spec", "task, probe", "b − a", "Δ accuracy (points)", "95% bootstrap CI", "Wilcoxon p", "images",
               "95% CI over seeds", "seeds", "verdict"]
    caption = ("Paired over the same test images: per image, each encoder's correctness (0/1) averaged over its seeds, "
               "then Δ = b − a; percentile bootstrap CI of the mean Δ and a two-sided Wilcoxon signed-rank p; runs "
               "paired by seed give the t-interval over seeds. Significant = the bootstrap CI excludes 0 and, with two "
               "or more seeds, the seed CI excludes 0 on the same side. In accuracy points (%). No multiple-comparison "
               "correction.")
    return tables.Table("features_paired", "Features: paired differences between encoders", caption,
                        pd.DataFrame(cells, columns=columns), pd.DataFrame(data))


def published_table() -> tables.Table:
    cells = [[p.method, p.task, p.dataset, p.protocol, f"{p.value:.1f}", p.metric] for p in TABLE1]
    caption = (f"Published reference only ({SOURCE}): measured on PASCAL VOC with an AlexNet-style encoder pretrained on "
               "ImageNet images and fine-tuned end to end: other data, other networks, other metrics than the probe "
               "above, so not comparable in value. The paper's other rows (ImageNet labels, random Gaussian "
               "initialisation, an autoencoder, other self-supervised methods) are not repeated here.")
    data = pd.DataFrame([p.__dict__ | {"source": SOURCE} for p in TABLE1])
    return tables.Table("features_published", "Features: Pathak et al. 2016, Table 1 (published, PASCAL VOC)", caption,
                        pd.DataFrame(cells, columns=["method", "task", "dataset", "protocol", "value", "metric"]), data)


def section(doc: Doc, study: Study, out: Path, n_boot: int = N_BOOT) -> None:
    """The Features section, when any input folder has a probe.csv."""
    probes, preds = load_probes(study)
    if probes.empty:
        return
    lv = levels(probes)
    doc.h2("Features: what the encoders learned")
    data = ", ".join(dict.fromkeys(probes["probe_data"].astype(str)))
    sizes = ", ".join(dict.fromkeys(f"{int(r['probe_n_train'])} train / {int(r['probe_n_val'])} val / "
                                    f"{int(r['probe_n_test'])} test" for _, r in probes.iterrows()))
    doc.p(f"Each run's encoder, frozen or fine-tuned, classifies labelled images ({data}; {sizes} images): the "
          "feature-learning claim of Pathak et al. 2016 measured on the runs above. Made by `cebench probe "
          "runs/<spec>/` (or a `probe:` section in the spec); the numbers are in each spec folder's `probe.csv`.")
    for t in (level_table(lv), pair_table(compare(lv, preds, n_boot)), published_table()):
        tables.write(t, out / "tables")
        doc.table(t)
