"""A trained run put to use: loading it, and `cebench eval` (re-scoring it on new data). `cebench inpaint` is in
`cebench.photo`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from cebench.checkpoint import RESULT, WEIGHTS, load_weights, read_run_config
from cebench.config import DataConfig
from cebench.data.source import load_split
from cebench.device import synchronize
from cebench.evaluate import evaluate
from cebench.metrics import summarize
from cebench.models import Generator
from cebench.results import append_rows, make_row
from cebench.task import Task


def load_run(run_dir: Path, device: torch.device) -> tuple[Task, Generator, DataConfig, int]:
    variant, data, seed = read_run_config(run_dir)
    task = Task(variant)
    generator = task.build_generator()
    load_weights(run_dir / WEIGHTS, generator)
    return task, generator.to(device).eval(), data, seed


def eval_run(run_dir: Path, device: torch.device, data_path: Path | None = None, n_test: int | None = None,
             out: Path | None = None) -> dict[str, Any]:
    """Re-score a trained run on its own test split or on a folder of images, next to the references of `cebench run`
    (fill, untrained model, classical inpainting) on the same images and holes; append the row to `out`."""
    from cebench.run import reference_scores  # run imports the trainer: only `eval` needs it here

    task, generator, data, seed = load_run(run_dir, device)
    if data_path is not None:
        # Every image of the folder is test data: n_test caps it, nothing goes to train or val.
        data = DataConfig(name="folder", path=data_path, n_train=None, n_val=0, n_test=n_test or 10**9)
    elif n_test is not None:
        data = data.model_copy(update={"n_test": n_test})
    test = load_split(data, "test", task.variant.image_size, device)
    started = time.perf_counter()
    scores = evaluate(generator, task, test, amp=device.type == "cuda")
    synchronize(device)  # the scores are still being computed on a GPU until here
    eval_images_per_s = len(test) / (time.perf_counter() - started)
    trained = json.loads((run_dir / RESULT).read_text()) if (run_dir / RESULT).is_file() else {}
    row = make_row(spec=trained.get("spec", run_dir.parent.name), run_id=run_dir.name, variant=task.variant, data=data,
                   seed=seed, summary=summarize(scores), n_test=len(test), device=device,
                   train_time_s=trained.get("train_time_s", float("nan")),
                   images_per_s=trained.get("images_per_s", float("nan")),
                   extra={"evaluated": "eval", "eval_images_per_s": eval_images_per_s,
                          **reference_scores(task, seed, test, device)})
    append_rows(out or run_dir / "eval.csv", [row], replace_same_run=False)
    return row
