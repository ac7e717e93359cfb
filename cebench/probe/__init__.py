"""Feature learning (Pathak et al. 2016, "Feature Learning by Inpainting"): what a trained encoder learned, measured by
a linear probe and by fine-tuning on labelled images (`cebench probe`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from cebench.config import DataConfig, ProbeConfig
from cebench.errors import UserError
from cebench.probe.runs import PROBE_CSV, find_runs, probe_runs, spec_probe_config

__all__ = ["PROBE_CSV", "parse_data", "probe_cli", "probe_runs"]


def parse_data(text: str) -> DataConfig:
    """`--data`: `landscapes`, `landscapes:SEED` or `folder:PATH`."""
    name, _, arg = text.partition(":")
    if name == "landscapes":
        try:
            return DataConfig(seed=int(arg or 0))
        except ValueError:
            raise UserError(f"--data {text!r}: the landscapes seed must be an integer") from None
    if name == "folder" and arg:
        return DataConfig(name="folder", path=Path(arg))
    raise UserError(f"--data {text!r}: valid: landscapes, landscapes:SEED, folder:PATH")


def probe_cli(path: Path, *, data: str | None, tasks: str | None, layers: str | None, kinds: str | None,
              n_train: int | None, n_val: int | None, n_test: int | None, epochs: int | None, device: str,
              console: Console) -> Path:
    """`cebench probe`: the spec's `probe:` settings (if any), overridden by the options; returns probe.csv's path."""
    from cebench.device import pick_device

    spec_dir = find_runs(path)[0]
    base = spec_probe_config(spec_dir) or ProbeConfig()
    updates: dict[str, Any] = {
        "data": parse_data(data) if data else None, "tasks": _names(tasks), "layers": _names(layers),
        "kinds": _names(kinds), "n_train": n_train, "n_val": n_val, "n_test": n_test, "finetune_epochs": epochs,
    }
    payload = {**base.model_dump(), **{k: v for k, v in updates.items() if v is not None}}
    try:
        cfg = ProbeConfig.model_validate(payload)
    except ValidationError as e:
        err = e.errors()[0]
        raise UserError(f"probe {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    probe_runs(path, cfg, pick_device(device), console=console)
    return spec_dir / PROBE_CSV


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None
