"""Every GPU figure of BENCHMARKS.md from one command: `nox -s gpu`, or `python -m benchmarks.gpu` where the packages are
already installed (a lent GPU machine without network).

It runs the benchmark suite (on CUDA its shapes are the paper's: 128 px, batches 64/256/1024, 15K images, 10K scored),
then `cebench bench` on the fast path (with and without CUDA graphs) and the plain path, and writes one Markdown block,
ready to paste over the GPU section of BENCHMARKS.md: the machine, the software, the command, and every figure
measured, with the suite's JSON beside it. A path that fails is said in its column, and the others are still measured.
`--device cpu --quick` is the dry run the tests make, so the script is known to work before a GPU ever runs it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import cebench.train
from benchmarks.conftest import _describe
from cebench.bench import headline
from cebench.device import pick_device

HEADLINE_ROWS = (
    ("training images/s", "train_images_per_s", "{:,.1f}"),
    ("GFLOP per image (one joint step)", "gflop_per_image", "{:.3f}"),
    ("achieved TFLOP/s", "achieved_tflops", "{:.1f}"),
    ("fraction of bf16 peak", "fraction_of_bf16_peak", "{:.1%}"),
    ("warm-up: the fit's first step(s), compilation and kernel choice (s)", "warmup_s", "{:.1f}"),
    ("100-epoch paper run, 15K images, training + warm-up (s)", "paper_run_s", "{:,.0f}"),
    ("scoring images/s (4 metrics + sharpness, RGB and luma)", "score_images_per_s", "{:,.0f}"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N (default cuda), or cpu for a dry run")
    parser.add_argument("--out", type=Path, default=Path(".benchmarks/gpu.md"), help="the Markdown block to write")
    parser.add_argument("--quick", action="store_true", help="a dry run: one benchmark, tiny headline, plain path only")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    suite_json = args.out.with_suffix(".json")
    suite = [sys.executable, "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", f"--benchmark-json={suite_json}",
             "--benchmark-columns=mean,stddev,rounds", *(["-k", "test_score_images_per_s"] if args.quick else [])]
    code = subprocess.run(suite, check=False).returncode  # its own process: its compiled graphs do not meet ours
    suite_rows = _suite_rows(suite_json) if suite_json.is_file() else []

    runs: dict[str, Callable[[], dict[str, Any]]]
    if args.quick:
        runs = {"plain fp32": lambda: headline(device, "pathak2016_l2", batch_size=2, steps=1, fast=False)}
    else:
        runs = {"fast (bf16, compile, CUDA graphs)": lambda: headline(device, fast=True),
                "fast without CUDA graphs": lambda: _without_cuda_graphs(lambda: headline(device, fast=True)),
                "plain fp32": lambda: headline(device, fast=False)}
    paths: dict[str, dict[str, Any] | str] = {}
    for label, run in runs.items():  # a path that fails is said in its column; the others are still measured
        try:
            paths[label] = run()
        except Exception as error:  # any failure is a finding to report, not a reason to stop
            paths[label] = f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            code = code or 1
    args.out.write_text(_markdown(device, paths, suite_rows, suite_json, " ".join(["python -m benchmarks.gpu",
                                                                                 *(argv or sys.argv[1:])])))
    print(f"wrote {args.out} and {suite_json}" + ("" if code == 0 else f" (the suite exited {code})"))
    return code


def _without_cuda_graphs(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`measure` with the fast path's CUDA graphs off (what CEBENCH_CUDA_GRAPHS=0 does for a whole process)."""
    saved, cebench.train.CUDA_GRAPHS = cebench.train.CUDA_GRAPHS, False
    try:
        return measure()
    finally:
        cebench.train.CUDA_GRAPHS = saved


def _suite_rows(path: Path) -> list[tuple[str, str]]:
    """(benchmark, its figures) for every benchmark of a pytest-benchmark JSON file."""
    rows = []
    for bench in json.loads(path.read_text())["benchmarks"]:
        figures = {k: v for k, v in bench["extra_info"].items() if k not in ("device", "torch", "shape")}
        rows.append((bench["name"], "; ".join(_describe(k, v) for k, v in figures.items()) or
                     f"{bench['stats']['mean']:.4g} s per round"))
    return rows


def _markdown(device: torch.device, paths: dict[str, dict[str, Any] | str], suite: list[tuple[str, str]], suite_json: Path,
              command: str) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    cuda = f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if device.type == "cuda" else ""
    measured = [p for p in paths.values() if isinstance(p, dict)]
    first = measured[0] if measured else {"preset": "landscape2023", "batch": "-"}
    lines = [
        f"## GPU: {name}, {datetime.date.today().isoformat()}", "",
        f"Software: Python {platform.python_version()}, torch {torch.__version__}{cuda}. Command: `{command}` "
        f"(the suite's JSON: `{suite_json}`).", "",
        f"### `cebench bench`: `{first['preset']}` at 128 px, batch {first['batch']}", "",
        "| figure | " + " | ".join(paths) + " |", "| --- |" + " ---: |" * len(paths),
    ]
    for label, key, fmt in HEADLINE_ROWS:
        cells = [p if isinstance(p, str) else "-" if p[key] is None else fmt.format(p[key]) for p in paths.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "### The benchmark suite (`nox -s bench`; paper shapes on CUDA)", "", "| benchmark | figures |",
              "| --- | --- |"]
    lines += [f"| `{bench}` | {figures} |" for bench, figures in suite]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
