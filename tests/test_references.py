"""Reference scores of a run (fill, untrained model, classical methods), shared between the runs of a grid that would
compute the same numbers."""

from __future__ import annotations

import pytest
import torch

from cebench.config import Variant
from cebench.data.source import load_split
from cebench.run import reference_scores
from cebench.task import Task
from tests.conftest import TINY, TINY_DATA

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    return load_split(TINY_DATA, "test", TINY["image_size"], CPU)[:8]


def test_a_shared_cache_gives_each_run_what_it_would_compute_alone(test_images: torch.Tensor) -> None:
    cache: dict[tuple[str, ...], dict[str, float]] = {}
    variants = [
        Variant(**TINY, loss="l2"),
        Variant(**TINY, loss="joint"),  # the same generator untrained: every reference reused
        Variant(**{**TINY, "width": 4}, loss="l2"),  # another untrained model, the same fill and classical methods
        Variant(**TINY, loss="l2", overlap=2),  # other holes: nothing reused
    ]
    sizes = []
    for v in variants:
        shared = reference_scores(Task(v), 0, test_images, CPU, cache)
        alone = reference_scores(Task(v), 0, test_images, CPU)
        assert list(shared) == list(alone)  # the same columns in the same order
        assert shared == pytest.approx(alone, nan_ok=True)
        sizes.append(len(cache))
    assert sizes == [3, 3, 4, 7]


def test_the_untrained_model_depends_on_the_seed(test_images: torch.Tensor) -> None:
    cache: dict[tuple[str, ...], dict[str, float]] = {}
    a = reference_scores(Task(Variant(**TINY)), 0, test_images, CPU, cache)
    b = reference_scores(Task(Variant(**TINY)), 1, test_images, CPU, cache)
    assert a["untrained_psnr_mean"] != b["untrained_psnr_mean"] and a["fill_psnr_mean"] == b["fill_psnr_mean"]
    assert len(cache) == 4
