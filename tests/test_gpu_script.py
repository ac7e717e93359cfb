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
