"""The one command a lent GPU runs to fill BENCHMARKS.md, dry-run on CPU: it must work the first time it meets a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_figures_script_writes_a_block_for_benchmarks_md(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = out.read_text()
    assert text.startswith("## GPU: cpu") and "torch " in text and "python -m benchmarks.gpu" in text
    for label in ("training images/s", "fraction of bf16 peak", "100-epoch paper run", "scoring images/s"):
        assert label in text, label
    suite = [line for line in text.splitlines() if line.startswith("| `test_score_images_per_s")]
    assert suite and "images_per_s" in suite[0], text
    assert out.with_suffix(".json").is_file()


def test_a_failed_path_is_said_in_its_column_and_cuda_graphs_come_back_on(tmp_path: Path) -> None:
    import torch

    import cebench.train
    from benchmarks.gpu import _markdown, _without_cuda_graphs

    before, seen = cebench.train.CUDA_GRAPHS, []
    figures = _without_cuda_graphs(lambda: seen.append(cebench.train.CUDA_GRAPHS) or {"preset": "p", "batch": 2})
    assert seen == [False] and figures["batch"] == 2 and before == cebench.train.CUDA_GRAPHS  # off inside only
    measured = {"preset": "landscape2023", "batch": 16, "train_images_per_s": 12.0, "gflop_per_image": 4.1,
                "achieved_tflops": 0.05, "fraction_of_bf16_peak": None, "warmup_s": 3.0, "paper_run_s": 9e4,
                "score_images_per_s": 500.0}
    text = _markdown(torch.device("cpu"), {"fast": "failed: RuntimeError: graph", "plain fp32": measured}, [],
                     tmp_path / "suite.json", "python -m benchmarks.gpu")
    row = next(line for line in text.splitlines() if line.startswith("| training images/s"))
    assert row == "| training images/s | failed: RuntimeError: graph | 12.0 |"
