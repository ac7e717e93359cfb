"""Feature learning: labels, the pretext variants, the linear probe's statistics, and `cebench probe` end to end."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from rich.console import Console
from safetensors.torch import load_file
from typer.testing import CliRunner

from cebench.checkpoint import WEIGHTS
from cebench.cli import app
from cebench.config import Spec
from cebench.data import landscapes
from cebench.errors import UserError
from cebench.probe.labels import LANDSCAPE_TASKS
from cebench.probe.linear import linear_probe, wilson_interval
from cebench.registry import create_variant
from cebench.report.stats import bootstrap_ci
from cebench.run import run_spec
from cebench.spec import expand, load_spec
from cebench.task import Task
from cebench.train import fit
from tests.conftest import TINY

runner = CliRunner()
INPAINT_MASK = "region"  # the slow test's inpainting encoder (the mask Pathak found to transfer best)


# ------------------------------------------------------------------------------------------------------------ labels
def test_attributes_are_deterministic_and_per_image() -> None:
    idx = torch.arange(40, 140)
    a = landscapes.attributes(5, idx)
    assert set(a) == set(landscapes.ATTRIBUTES)
    alone = landscapes.attributes(5, idx[[7]])
    for name, labels in a.items():
        assert labels.dtype == torch.int64 and labels.shape == (100,)
        assert torch.equal(labels, landscapes.attributes(5, idx)[name])
        assert alone[name].item() == labels[7].item()  # a label depends on its image only, not on the batch
        assert set(labels.tolist()) <= set(range(len(landscapes.ATTRIBUTES[name])))
    assert not torch.equal(a["ridges"], landscapes.attributes(6, idx)["ridges"])


def _thumbnail(images: torch.Tensor) -> np.ndarray:
    return F.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1).numpy()


def test_a_few_raw_pixels_do_not_solve_the_probe_tasks() -> None:
    """A linear classifier on a 4x4 thumbnail (48 numbers) stays near chance on the default tasks, while the same
    classifier reads the palette and the lake off the image: the control has the power to find a pixel shortcut (and
    the labels belong to their images: misaligned labels would leave every task at chance)."""
    size, n = 32, (600, 200, 400)
    starts = (0, 10_000, 20_000)
    x = [_thumbnail(landscapes.generate_range(0, s, k, size)) for s, k in zip(starts, n, strict=True)]
    y = [landscapes.attributes(0, torch.arange(s, s + k)) for s, k in zip(starts, n, strict=True)]
    for task in ("palette", "lake", *LANDSCAPE_TASKS):
        s = linear_probe(x[0], y[0][task].numpy(), x[1], y[1][task].numpy(), x[2], y[2][task].numpy())
        if task in LANDSCAPE_TASKS:
            assert s.accuracy < s.chance + 0.15, (task, s.accuracy, s.chance)
        else:
            assert s.accuracy > 0.85, (task, s.accuracy)


# ------------------------------------------------------------------------------------------------------ linear probe
def test_linear_probe_recovers_a_planted_signal_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 40)).astype(np.float32)
    w = rng.normal(size=40)
    y = (x @ w > 0).astype(np.int64)
    noise = rng.integers(0, 2, size=900)
    split = lambda a: (a[:500], a[500:650], a[650:])  # noqa: E731
    (xtr, xva, xte), (ytr, yva, yte), (ntr, nva, nte) = split(x), split(y), split(noise)
    signal = linear_probe(xtr, ytr, xva, yva, xte, yte)
    assert signal.accuracy > 0.9 and signal.ci_lo <= signal.accuracy <= signal.ci_hi
    chance = linear_probe(xtr, ntr, xva, nva, xte, nte)
    assert chance.ci_lo < 0.5 < chance.ci_hi or abs(chance.accuracy - 0.5) < 0.1
    # Test labels take no part in fitting or in the choice of the L2 strength: shuffling them changes no prediction.
    shuffled = linear_probe(xtr, ytr, xva, yva, xte, rng.permutation(yte))
    assert np.array_equal(shuffled.predictions, signal.predictions) and shuffled.c == signal.c


def test_wilson_interval_against_the_closed_form() -> None:
    z = 1.959963984540054  # the 97.5% normal quantile
    for k, n in ((81, 263), (0, 20), (20, 20), (7, 10)):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half), abs=1e-12)


# ----------------------------------------------------------------------------------------------------------- pretexts
def test_autoencoder_hides_nothing_and_predicts_everything() -> None:
    v = create_variant("pathak2016_l2", **TINY, pretext="autoencoder")
    task = Task(v)
    cpu = torch.device("cpu")
    masks = task.train_masks(task.train_mask_draws(4, torch.Generator().manual_seed(0)), 4, cpu)
    assert not masks.hole.any() and masks.region.all()
    assert torch.equal(task.loss_weights(masks), torch.ones(4, 1, 32, 32))
    assert task.out_size == 32 and task.build_generator()(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    inpaint = Task(v.model_copy(update={"pretext": "inpaint"}))
    draws = inpaint.train_mask_draws(4, torch.Generator().manual_seed(0))
    assert inpaint.train_masks(draws, 4, cpu).hole.any() and inpaint.out_size == 16


def test_pretext_none_is_an_untrained_run_with_weights(tmp_path: Path) -> None:
    v = create_variant("pathak2016_l2", **TINY, pretext="none")
    assert v.epochs == 0  # set by the pretext, whatever the spec's epochs
    with pytest.raises(UserError, match="pretext: none"):
        create_variant("pathak2016_l2", **{**TINY, "epochs": 0})
    images = landscapes.generate_range(0, 0, 32, 32)
    result = fit(v, images, images[:0], seed=4, run_dir=tmp_path)
    assert result.history == [] and (tmp_path / WEIGHTS).is_file()
    torch.manual_seed(4)
    fresh = Task(v).build_generator().state_dict()
    saved = load_file(str(tmp_path / WEIGHTS))
    assert all(torch.equal(saved[f"G.{k}"], t) for k, t in fresh.items())


def test_spec_exclude_skips_grid_points() -> None:
    spec = Spec(name="x", preset="pathak2016_l2", overrides=TINY,
                axes={"pretext": ["inpaint", "autoencoder", "none"], "mask": ["center", "region"]},
                exclude=[{"pretext": "autoencoder", "mask": "region"}, {"pretext": "none", "mask": "region"}])
    assert [p.run_id for p in expand(spec)] == [
        "pretext=inpaint-mask=center-seed0", "pretext=inpaint-mask=region-seed0",
        "pretext=autoencoder-mask=center-seed0", "pretext=none-mask=center-seed0"]
    with pytest.raises(ValueError, match="unknown variant field"):
        Spec(name="x", exclude=[{"pretxt": "none"}])


# --------------------------------------------------------------------------------------------------------- end to end
SPEC = """
name: feat
preset: pathak2016_l2
data: {name: landscapes, n_train: 64, n_val: 0, n_test: 16, seed: 3}
overrides: {image_size: 32, width: 8, bottleneck_dim: 32, batch_size: 16, overlap: 1}
axes:
  pretext: [inpaint, none]
seeds: [0]
epochs: 1
probe: {n_train: 96, n_val: 48, n_test: 64, finetune_epochs: 1, batch_size: 32}
"""


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spec with a probe section, run once: two runs (inpainting, untrained), probed, in runs/feat/."""
    root = tmp_path_factory.mktemp("probe")
    (root / "feat.yaml").write_text(SPEC)
    result = runner.invoke(app, ["run", str(root / "feat.yaml"), "--out", str(root / "runs"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return root / "runs" / "feat"


def test_run_with_a_probe_section_writes_the_probe_table(probed: Path) -> None:
    table = pd.read_csv(probed / "probe.csv")
    runs = ["pretext=inpaint-seed0", "pretext=none-seed0"]
    assert sorted(set(table["run_id"])) == sorted([*runs, "pixels-32px-rgb"])
    for run in runs:
        rows = table[table["run_id"] == run]
        assert sorted(zip(rows["task"], rows["kind"], strict=True)) == sorted(
            (t, k) for t in LANDSCAPE_TASKS for k in ("linear", "finetune"))
        assert (rows["layer"] == "conv3").all() and (rows["probe_n_test"] == 64).all()
    assert {"pretext", "mask", "width", "data_seed", "seed", "accuracy", "ci_lo", "ci_hi", "chance"} <= set(table)
    assert ((table["ci_lo"] <= table["accuracy"]) & (table["accuracy"] <= table["ci_hi"])).all()
    preds = pd.read_csv(probed / "probe_predictions.csv")
    assert len(preds) == 64 * (2 * 4 + 2)
    # The accuracies are the predictions' (no separate bookkeeping).
    acc = preds.assign(ok=preds["label"] == preds["prediction"]).groupby(["run_id", "task", "kind"])["ok"].mean()
    for _, r in table.iterrows():
        assert acc[(r["run_id"], r["task"], r["kind"])] == pytest.approx(r["accuracy"])


def test_probe_is_deterministic_and_skips_what_is_done(probed: Path, tmp_path: Path) -> None:
    copy = tmp_path / "feat"
    shutil.copytree(probed, copy)
    before = pd.read_csv(copy / "probe.csv")
    result = runner.invoke(app, ["probe", str(copy), "--device", "cpu"])
    assert result.exit_code == 0 and "skipped" in result.output
    for name in ("probe.csv", "probe_predictions.csv"):
        (copy / name).unlink()
    result = runner.invoke(app, ["probe", str(copy), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    after = pd.read_csv(copy / "probe.csv")
    pd.testing.assert_series_equal(after["accuracy"], before["accuracy"])
    # One run, one task, more layers: only that run's rows change.
    result = runner.invoke(app, ["probe", str(copy / "pretext=none-seed0"), "--tasks", "ridges", "--layers",
                                 "conv2,conv3", "--kinds", "linear", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(copy / "probe.csv").query("run_id == 'pretext=none-seed0'")
    assert sorted(rows["layer"]) == ["conv2", "conv3"] and set(rows["task"]) == {"ridges"}


@pytest.mark.parametrize(("args", "message"), [
    (["--tasks", "colour"], "probe task 'colour' does not exist for landscapes data; valid: palette, lake, ridges"),
    (["--layers", "conv9"], "probe layer 'conv9' does not exist in this encoder; valid: conv1, conv2, conv3"),
    (["--kinds", "knn"], "probe kinds.0: Input should be 'linear' or 'finetune'"),
    (["--data", "imagenet"], "valid: landscapes, landscapes:SEED, folder:PATH"),
])
def test_bad_probe_options_exit_2_with_the_valid_choices(probed: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["probe", str(probed), *args, "--device", "cpu"])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_run_without_weights_exits_2(probed: Path, tmp_path: Path) -> None:
    copy = tmp_path / "feat"
    shutil.copytree(probed, copy)
    (copy / "pretext=none-seed0" / WEIGHTS).unlink()
    result = runner.invoke(app, ["probe", str(copy), "--device", "cpu"])
    assert result.exit_code == 2 and "run without weights" in result.output
    result = runner.invoke(app, ["probe", str(tmp_path / "nothing"), "--device", "cpu"])
    assert result.exit_code == 2 and "no such run or spec folder" in result.output


def _class_folder(root: Path, colours: dict[str, tuple[int, int, int]], n: int) -> None:
    rng = np.random.default_rng(0)
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, size=(40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_a_folder_of_class_subfolders_is_labelled_data(probed: Path, tmp_path: Path) -> None:
    copy = tmp_path / "feat"
    shutil.copytree(probed, copy)
    _class_folder(tmp_path / "colours", {"red": (200, 40, 40), "blue": (40, 40, 200)}, 30)
    result = runner.invoke(app, ["probe", str(copy / "pretext=none-seed0"), "--data", f"folder:{tmp_path / 'colours'}",
                                 "--n-train", "40", "--n-val", "10", "--n-test", "10", "--kinds", "linear",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(copy / "probe.csv").query("task == 'class'")
    assert set(rows["classes"]) == {"blue|red"} and (rows["probe_n_test"] == 10).all()
    assert (rows["accuracy"] == 1.0).all()  # red vs blue is linearly separable, from raw pixels and random features

    _class_folder(tmp_path / "one", {"red": (200, 40, 40)}, 30)
    result = runner.invoke(app, ["probe", str(copy), "--data", f"folder:{tmp_path / 'one'}", "--n-val", "5",
                                 "--n-test", "5", "--device", "cpu"])
    assert result.exit_code == 2 and "has 1 class (red)" in result.output and "two or more" in result.output
    result = runner.invoke(app, ["probe", str(copy), "--data", f"folder:{tmp_path / 'colours'}", "--tasks", "ridges",
                                 "--device", "cpu"])
    assert result.exit_code == 2 and "valid: class" in result.output


def test_report_has_a_features_section(probed: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(probed), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Features: what the encoders learned" in md and "raw pixels" in md
    assert "arXiv:1604.07379" in md and "56.5" in md and "not comparable in value" in md
    paired = pd.read_csv(tmp_path / "rep" / "tables" / "features_paired.csv")
    assert len(paired) == 2 * 2  # inpaint vs none, per task, per probe kind
    spec = json.loads((probed / "spec.json").read_text())
    assert spec["probe"]["n_test"] == 64


def test_a_spec_with_a_bad_probe_task_fails_before_training(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(SPEC.replace("probe: {", "probe: {tasks: [ridges, clouds], "))
    result = runner.invoke(app, ["run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "probe task 'clouds' does not exist" in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_inpainting_teaches_the_encoder_more_than_random_init(tmp_path: Path) -> None:
    """The shipped CPU ablation cut to one seed, two encoders and the linear probe: the encoder trained to inpaint beats
    the same network at its random initialisation on at least one task, significantly over the same test images."""
    spec = load_spec(Path(__file__).parent.parent / "ablations" / "features_quick.yaml")
    assert spec.probe is not None
    spec = spec.model_copy(update={
        "seeds": [0], "axes": {"pretext": ["inpaint", "none"]}, "exclude": [],
        "overrides": {**spec.overrides, "mask": INPAINT_MASK},
        "probe": spec.probe.model_copy(update={"kinds": ("linear",)})})
    run_spec(spec, tmp_path, torch.device("cpu"), console=Console(file=io.StringIO()))
    preds = pd.read_csv(tmp_path / spec.name / "probe_predictions.csv")
    correct = preds.assign(ok=(preds["label"] == preds["prediction"]).astype(float))
    wins = []
    for task in LANDSCAPE_TASKS:
        per_run = {run: g.sort_values("test_index")["ok"].to_numpy() for run, g in correct[correct["task"] == task]
                   .groupby("run_id")}
        lo, _ = bootstrap_ci(per_run["pretext=inpaint-seed0"] - per_run["pretext=none-seed0"])
        wins.append(lo > 0)
    assert any(wins)
