"""Fits in one process compile static graphs: a second batch size or critic does not turn the compiled graphs dynamic
(dynamo's default after a shape change), which would make later runs of an ablation train other code than the first.

Compilation goes through a backend that records each graph and runs it eagerly, so the test traces what `fit` compiles
without paying inductor's code generation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from cebench.data.source import load_split
from cebench.registry import create_variant
from cebench.train import fit
from tests.conftest import TINY, TINY_DATA


def symbolic_inputs(graph: torch.fx.GraphModule) -> list[str]:
    """The graph's inputs with a symbolic size (or that are symbolic sizes themselves)."""
    found = []
    for node in graph.graph.find_nodes(op="placeholder"):
        value = node.meta.get("example_value")
        if isinstance(value, torch.SymInt) or (
            isinstance(value, torch.Tensor) and any(isinstance(d, torch.SymInt) for d in value.shape)
        ):
            found.append(node.name)
    return found


def test_fits_of_other_shapes_in_one_process_compile_static_graphs(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    graphs: list[torch.fx.GraphModule] = []

    def recording(graph: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        graphs.append(graph)
        return graph.forward

    real_compile = torch.compile

    def compile_recorded(model: Any, **kwargs: Any) -> Any:
        return real_compile(model, **{**kwargs, "backend": recording})

    monkeypatch.setattr(torch, "compile", compile_recorded)
    train = load_split(TINY_DATA, "train", 32, torch.device("cpu"))
    shapes = [{}, {"batch_size": 8}, {"discriminator": "patch", "batch_size": 8}]  # batch, then critic input size
    for i, overrides in enumerate(shapes):
        v = create_variant("landscape2023", **{**TINY, "epochs": 1, **overrides})
        fit(v, train[:32], train[:0], seed=0, run_dir=tmp_path / str(i), fast=True)
    assert len(graphs) >= 2 * len(shapes)  # the generator's and the critic's forward, at least, in every fit
    assert [symbolic_inputs(g) for g in graphs if symbolic_inputs(g)] == []
