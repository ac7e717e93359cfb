"""End to end through the command line, on tiny specs: run, resume, eval, inpaint, list, and user errors."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import cebench.run
from cebench.cli import app
from cebench.smoke import check

runner = CliRunner()

SPEC = """
name: tiny
preset: landscape2023
data: {name: landscapes, n_train: 64, n_val: 16, n_test: 16, seed: 3}
overrides: {image_size: 32, width: 8, bottleneck_dim: 32, overlap: 2}
axes: {loss: [l2, joint]}
seeds: [0]
epochs: 2
batch_size: 16
"""


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.yaml").write_text(SPEC)
    code, out = invoke("run", root / "tiny.yaml", "--out", root / "runs", "--device", "cpu")
    assert code == 0, out
    (root / "run.out").write_text(out)
    return root


def test_run_reports_its_completion_once_with_the_grids_rate(trained: Path) -> None:
    out = (trained / "run.out").read_text()
    assert out.count("tiny: 2 runs on cpu") == 1
    for run in ("loss=l2-seed0", "loss=joint-seed0"):
        assert out.count(f"{run}: hole PSNR") == 1  # one line as each run finishes; the table has the rest
    rate = re.search(r"tiny: runs .* 2/2 +([\d,.]+) img/s", out)
    assert rate is not None and float(rate.group(1).replace(",", "")) > 0, out


def test_run_writes_one_row_per_run_with_provenance(trained: Path) -> None:
    table = pd.read_csv(trained / "runs" / "tiny" / "results.csv")
    assert list(table["run_id"]) == ["loss=l2-seed0", "loss=joint-seed0"]
    assert not [p for p in check(table) if p.startswith("missing column")]
    assert {"psnr_mean", "ssim_std", "luma_psnr_mean", "image_psnr_mean", "sharpness_mean", "git_commit",
            "torch_version", "device", "train_time_s", "images_per_s", "bottleneck", "data_n_train"} <= set(table)
    assert (trained / "runs" / "tiny" / "results.parquet").is_file()
    run = trained / "runs" / "tiny" / "loss=joint-seed0"
    for name in ("model.safetensors", "state.pt", "train.log", "samples.png", "per_image.csv", "history.csv"):
        assert (run / name).is_file(), name
    per_image = pd.read_csv(run / "per_image.csv")
    assert len(per_image) == 16
    assert per_image["psnr"].mean() == pytest.approx(table["psnr_mean"].iloc[1], rel=1e-5)


def test_rerun_needs_resume_and_resume_skips_finished(trained: Path, tmp_path: Path) -> None:
    code, out = invoke("run", trained / "tiny.yaml", "--out", trained / "runs", "--device", "cpu")
    assert code == 2 and "--resume" in out and "Traceback" not in out
    code, out = invoke("run", trained / "tiny.yaml", "--out", trained / "runs", "--device", "cpu", "--resume")
    assert code == 0 and "finished earlier, skipped" in out
    (tmp_path / "one.yaml").write_text(SPEC.replace("[l2, joint]", "[l2]"))
    for _ in range(2):  # the second time over the first's outputs
        code, out = invoke("run", tmp_path / "one.yaml", "--out", tmp_path / "runs", "--device", "cpu", "--overwrite")
        assert code == 0, out
    assert list(pd.read_csv(tmp_path / "runs" / "tiny" / "results.csv")["run_id"]) == ["loss=l2-seed0"]


def test_eval_and_results_print_their_own_rate_in_every_format(trained: Path, tmp_path: Path) -> None:
    run = trained / "runs" / "tiny" / "loss=l2-seed0"
    result = runner.invoke(app, [str(a) for a in ("eval", run, "--out", tmp_path / "eval.csv", "--device", "cpu")])
    assert result.exit_code == 0, result.output
    row = pd.read_csv(tmp_path / "eval.csv").iloc[-1]
    header, _, cells = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| ")][:3]
    assert header[-2].strip() == "eval img/s"  # piped: Markdown, with scoring's rate, not training's
    assert cells[-2].strip() == f"{row['eval_images_per_s']:.0f}" and row["eval_images_per_s"] > 0
    result = runner.invoke(app, [str(a) for a in ("eval", run, "--out", tmp_path / "eval.csv", "--device", "cpu",
                                                  "--format", "json")])
    [record] = json.loads(result.stdout)
    assert record["run_id"] == "loss=l2-seed0" and record["eval_images_per_s"] > 0
    assert record["psnr_mean"] == pytest.approx(pd.read_csv(tmp_path / "eval.csv")["psnr_mean"].iloc[-1])
    result = runner.invoke(app, [str(a) for a in ("results", trained / "tiny.yaml", "--out", trained / "runs",
                                                  "--format", "csv")])
    assert [r["run_id"] for r in csv.DictReader(io.StringIO(result.stdout))] == ["loss=l2-seed0", "loss=joint-seed0"]
    code, out = invoke("results", trained / "tiny.yaml", "--out", trained / "runs")
    assert code == 0 and "train img/s" in out and "eval img/s" not in out


def test_interrupted_run_resumes_to_the_same_result(trained: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real_fit = cebench.run.fit

    def interrupted_fit(*args, **kwargs):  # type: ignore[no-untyped-def]
        def stop(epoch: int, record: dict[str, float]) -> None:
            raise KeyboardInterrupt

        return real_fit(*args, **{**kwargs, "on_epoch": stop, "checkpoint_every_s": 0})

    (tmp_path / "tiny.yaml").write_text(SPEC)
    monkeypatch.setattr(cebench.run, "fit", interrupted_fit)
    code, out = invoke("run", tmp_path / "tiny.yaml", "--out", tmp_path / "runs", "--device", "cpu")
    assert code == 130 and "--resume" in out
    monkeypatch.setattr(cebench.run, "fit", real_fit)
    code, out = invoke("run", tmp_path / "tiny.yaml", "--out", tmp_path / "runs", "--device", "cpu", "--resume")
    assert code == 0, out
    assert "resumed after 1 epochs" in (tmp_path / "runs" / "tiny" / "loss=l2-seed0" / "train.log").read_text()
    resumed = pd.read_csv(tmp_path / "runs" / "tiny" / "results.csv")
    straight = pd.read_csv(trained / "runs" / "tiny" / "results.csv")
    for col in ("psnr_mean", "l1_mean", "ssim_mean"):
        np.testing.assert_allclose(resumed[col], straight[col], rtol=1e-6)


def test_eval_rescores_the_same_numbers(trained: Path, tmp_path: Path) -> None:
    run = trained / "runs" / "tiny" / "loss=joint-seed0"
    code, out = invoke("eval", run, "--out", tmp_path / "eval.csv", "--device", "cpu")
    assert code == 0, out
    again = pd.read_csv(tmp_path / "eval.csv")
    first = pd.read_csv(trained / "runs" / "tiny" / "results.csv").set_index("run_id").loc["loss=joint-seed0"]
    assert again["psnr_mean"].iloc[0] == pytest.approx(first["psnr_mean"], rel=1e-5)
    # The same classical references on the same images and holes as `cebench run` recorded, printed beside the model.
    assert again["biharmonic_psnr_mean"].iloc[0] == pytest.approx(first["biharmonic_psnr_mean"], rel=1e-9)
    assert "biharmonic" in out and "telea" in out and "do not beat the best classical method" in out

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 255, (40, 50, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"{i}.png")
    code, out = invoke("eval", run, "--data", photos, "--out", tmp_path / "eval.csv", "--device", "cpu")
    assert code == 0, out
    assert pd.read_csv(tmp_path / "eval.csv")["n_test"].tolist() == [16, 3]


def test_inpaint_keeps_context_and_size(trained: Path, tmp_path: Path) -> None:
    photo = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    run = trained / "runs" / "tiny" / "loss=l2-seed0"
    code, out = invoke("inpaint", run, tmp_path / "photo.png", "--out", tmp_path / "filled", "--device", "cpu")
    assert code == 0, out
    filled = np.asarray(Image.open(tmp_path / "filled" / "photo.png"))
    assert filled.shape == photo.shape
    assert np.array_equal(filled[:15], photo[:15]) and np.array_equal(filled[:, :20], photo[:, :20])
    assert not np.array_equal(filled[45], photo[45])


def test_list_shows_everything() -> None:
    code, out = invoke("list")
    assert code == 0
    for word in ("pathak2016", "landscape2023", "channelwise", "landscapes", "folder", "psnr", "ssim", "sharpness"):
        assert word in out


@pytest.mark.parametrize(("args", "needle"), [
    (["run", "missing.yaml"], "missing.yaml: no such file"),
    (["run", "{spec}", "--device", "tpu"], "--device 'tpu'"),
    (["eval", "{tmp}"], "is not a trained run"),
    (["score", "--pred", "{tmp}/nope", "--target", "{tmp}"], "nope"),
    (["data", "preview", "--folder", "{tmp}/nothing"], "does not exist"),
])
def test_user_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC)
    code, out = invoke(*(a.format(spec=tmp_path / "spec.yaml", tmp=tmp_path) for a in args))
    assert code == 2, out
    assert needle in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_bad_data_folder_in_spec(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "spec.yaml").write_text(SPEC.replace("{name: landscapes, ", f"{{name: folder, path: {empty}, "))
    code, out = invoke("run", tmp_path / "spec.yaml", "--out", tmp_path / "runs", "--device", "cpu")
    assert code == 2 and "has no images" in out and "Traceback" not in out


def test_data_preview(tmp_path: Path) -> None:
    code, out = invoke("data", "preview", "--out", tmp_path / "p.png", "--n", "8", "--size", "32")
    assert code == 0, out
    assert Image.open(tmp_path / "p.png").size[0] > 32 * 4


def score_folders(root: Path, predict: Callable[[np.ndarray], np.ndarray]) -> None:
    """root/target: three random 32 px images; root/pred: `predict` of each, paired by name."""
    rng = np.random.default_rng(0)
    for side in ("pred", "target"):
        (root / side).mkdir()
    for i in range(3):
        truth = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(truth).save(root / "target" / f"{i}.png")
        Image.fromarray(predict(truth)).save(root / "pred" / f"{i}.png")


def test_score_cli_writes_per_image_rows(tmp_path: Path) -> None:
    score_folders(tmp_path, lambda truth: 255 - truth)
    code, out = invoke("score", "--pred", tmp_path / "pred", "--target", tmp_path / "target",
                       "--out", tmp_path / "s.csv", "--device", "cpu")
    assert code == 0, out
    assert len(pd.read_csv(tmp_path / "s.csv")) == 3 and "psnr" in out


def test_inpaint_with_a_mask_file_on_a_block_trained_run(tmp_path: Path) -> None:
    spec = SPEC.replace("overlap: 2}", "overlap: 2, mask: block}").replace("[l2, joint]", "[l2]")
    (tmp_path / "block.yaml").write_text(spec)
    code, out = invoke("run", tmp_path / "block.yaml", "--out", tmp_path / "runs", "--device", "cpu")
    assert code == 0, out
    photo = np.random.default_rng(1).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    hole = np.zeros((64, 48), dtype=np.uint8)
    hole[10:30, 20:40] = 255
    Image.fromarray(hole).save(tmp_path / "hole.png")
    run = tmp_path / "runs" / "tiny" / "loss=l2-seed0"
    code, out = invoke("inpaint", run, tmp_path / "photo.png", "--mask", tmp_path / "hole.png",
                       "--out", tmp_path / "filled", "--device", "cpu")
    assert code == 0, out
    filled = np.asarray(Image.open(tmp_path / "filled" / "photo.png"))
    assert np.array_equal(filled[40:], photo[40:])  # far from the hole: untouched
    assert not np.array_equal(filled[10:30, 20:40], photo[10:30, 20:40])
    # A centre-trained run fills any hole too: it sees a square window centred on the hole, at its own resolution.
    code, out = invoke("inpaint", trained_center_run(tmp_path), tmp_path / "photo.png", "--mask", tmp_path / "hole.png",
                       "--out", tmp_path / "centre", "--device", "cpu")
    assert code == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "centre" / "photo.png"))[40:], photo[40:])


def trained_center_run(tmp_path: Path) -> Path:
    (tmp_path / "c.yaml").write_text(SPEC.replace("[l2, joint]", "[l2]").replace("name: tiny", "name: c"))
    code, out = invoke("run", tmp_path / "c.yaml", "--out", tmp_path / "runs", "--device", "cpu")
    assert code == 0, out
    return tmp_path / "runs" / "c" / "loss=l2-seed0"


def test_bench_prints_the_headline_figures() -> None:
    result = runner.invoke(app, ["bench", "--device", "cpu", "--preset", "pathak2016_l2", "--batch-size", "2",
                                 "--steps", "1", "--plain", "--format", "json"])
    assert result.exit_code == 0, result.output
    figures = {r["figure"].split(" (")[0]: r for r in json.loads(result.stdout)}
    for figure in ("training images/s", "fraction of bf16 peak", "warm-up", "100-epoch paper run", "scoring images/s"):
        assert figure in figures, figure
    assert figures["training images/s"]["value"] > 0 and figures["fraction of bf16 peak"]["value"] is None  # no GPU
    assert figures["warm-up"]["unit"] == "s"
    code, out = invoke("bench", "--preset", "nope")
    assert code == 2 and "--preset 'nope': unknown; valid:" in out and "Traceback" not in out
