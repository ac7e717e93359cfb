"""Run directories: weights in safetensors, training state loadable with `torch.load(weights_only=True)`, all atomic."""

from __future__ import annotations

import json
import pickle
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
    """Load a run's weights; a truncated file, one of another model, or NaN weights is one UserError naming the file."""
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error type for a torn or foreign file
        raise UserError(f"{path}: not a readable weights file ({_first_line(e)})") from None
    try:
        generator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("G.")})
        if discriminator is not None:
            discriminator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})
    except RuntimeError as e:
        raise UserError(f"{path}: the weights do not fit this run's model ({_first_line(e)})") from None
    if not all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point()):
        raise UserError(f"{path}: the weights hold NaN or infinite values (did this run diverge?)")


def save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        torch.save(state, file)  # through a Python file, so a full disk surfaces as the OSError behind torch's error


def load_state(path: Path) -> dict[str, Any]:
    """A training checkpoint, loaded with `weights_only` (no code runs from it); unreadable is one UserError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # never pass on torch's advice to retry with weights_only=False
        problem = "refused: it holds Python objects, not only tensors and plain data, so cebench did not write it"
    except Exception:  # torn by a crash or a full disk, or not a checkpoint at all
        problem = "truncated or damaged"
    raise UserError(f"{path}: checkpoint {problem}; delete it to train that run from the start, or rerun with "
                    "--overwrite")


def write_run_config(run_dir: Path, variant: Variant, data: DataConfig, seed: int) -> None:
    payload = {"variant": variant.model_dump(mode="json"), "data": data.model_dump(mode="json"), "seed": seed}
    write_text(run_dir / RUN, json.dumps(payload, indent=2))


def read_run_config(run_dir: Path) -> tuple[Variant, DataConfig, int]:
    """The variant, data and seed a run was trained with; a clear error when `run_dir` is not a trained run."""
    if not (run_dir / RUN).is_file() or not (run_dir / WEIGHTS).is_file():
        raise UserError(f"{run_dir} is not a trained run (expected {RUN} and {WEIGHTS} in it)")
    try:
        payload = json.loads((run_dir / RUN).read_text())
        return (Variant.model_validate(payload["variant"]), DataConfig.model_validate(payload["data"]),
                int(payload["seed"]))
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError and pydantic's ValidationError are ValueErrors
        raise UserError(f"{run_dir / RUN}: not a valid run record ({_first_line(e)})") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
