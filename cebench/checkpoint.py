"""Run directories: weights in safetensors, training state loadable with `torch.load(weights_only=True)`, all atomic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cebench.config import DataConfig, Variant
from cebench.errors import UserError
from cebench.imageio import atomic_path, write_text

WEIGHTS = "model.safetensors"
STATE = "state.pt"
RUN = "run.json"
RESULT = "result.json"


def save_weights(path: Path, generator: nn.Module, discriminator: nn.Module | None) -> None:
    tensors = {f"G.{k}": v.detach().contiguous().cpu() for k, v in generator.state_dict().items()}
    if discriminator is not None:
        tensors.update({f"D.{k}": v.detach().contiguous().cpu() for k, v in discriminator.state_dict().items()})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def load_weights(path: Path, generator: nn.Module, discriminator: nn.Module | None = None) -> None:
    tensors = load_file(str(path))
    generator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
    if discriminator is not None:
        discriminator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})


def save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def write_run_config(run_dir: Path, variant: Variant, data: DataConfig, seed: int) -> None:
    payload = {"variant": variant.model_dump(mode="json"), "data": data.model_dump(mode="json"), "seed": seed}
    write_text(run_dir / RUN, json.dumps(payload, indent=2))


def read_run_config(run_dir: Path) -> tuple[Variant, DataConfig, int]:
    """The variant, data and seed a run was trained with; a clear error when `run_dir` is not a trained run."""
    if not (run_dir / RUN).is_file() or not (run_dir / WEIGHTS).is_file():
        raise UserError(f"{run_dir} is not a trained run (expected {RUN} and {WEIGHTS} in it)")
    payload = json.loads((run_dir / RUN).read_text())
    return Variant.model_validate(payload["variant"]), DataConfig.model_validate(payload["data"]), int(payload["seed"])
