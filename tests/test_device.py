"""Device settings that only a GPU uses, checked where CI runs: they are flags, settable without a GPU."""

from __future__ import annotations

import torch

from cebench.device import cuda_settings


def test_plain_fp32_on_cuda_turns_tf32_off_and_autotunes_then_restores() -> None:
    backends = torch.backends
    before = backends.cudnn.benchmark, backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32
    with cuda_settings(torch.device("cuda", 1), fast=False):
        assert backends.cudnn.benchmark
        assert not backends.cudnn.allow_tf32 and not backends.cuda.matmul.allow_tf32
    assert (backends.cudnn.benchmark, backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32) == before
    with cuda_settings(torch.device("cuda"), fast=True):
        assert backends.cudnn.benchmark and backends.cudnn.allow_tf32 == before[1]
    with cuda_settings(torch.device("cpu"), fast=False):
        assert (backends.cudnn.benchmark, backends.cudnn.allow_tf32) == before[:2]
