"""What the command line prints: whole at 80 columns, plain when piped, parseable in every --format, and its conventions
(--version, completion, flags without a type, one completion summary per run)."""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import random
import sys
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from cebench.cli import app
from cebench.output import Listing, emit

runner = CliRunner()


def invoke(*args: str | Path, columns: int = 80) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})
    return result.exit_code, result.output


def terminal(listings: list[Listing], width: int) -> str:
    """What a terminal of `width` columns shows (a rich console that believes it is one)."""
    console = Console(width=width, force_terminal=True, record=True, file=io.StringIO())
    emit(listings, None, console)
    return console.export_text()


# Names the issue saw cut to "bottle…", "Landsc…", "channe…" at 80 columns and in a pipe.
WHOLE = {"list": ("bottleneck", "channelwise2016", "landscape2023_gray", "Landscape inpainting reproduction (2023)",
                  "Pathak et al. 2016, channel-wise bottleneck", "procedural landscape scenes"),
         "baselines": ("Viala Bellander & Holst (reproduction), Table I", "their landscape photos (15K train / 150 test)",
                       "BoyuanJiang/context_encoder_pytorch (Paris model)")}


@pytest.mark.parametrize("command", ["list", "baselines"])
def test_piped_output_is_plain_and_whole(command: str) -> None:
    code, out = invoke(command)  # COLUMNS=80, and CliRunner's output is not a terminal: Markdown
    assert code == 0
    assert "…" not in out and "┃" not in out and "\x1b[" not in out
    assert out.lstrip().startswith("**") and "| :--- |" in out.replace(" :--- | :--- |", " :--- |")
    for name in WHOLE[command]:
        assert name in out, name  # on one line, not wrapped at 80 columns


@pytest.mark.parametrize("command", ["list", "baselines"])
def test_names_are_whole_in_an_80_column_terminal(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from cebench import cli

    console = Console(width=80, force_terminal=True, record=True, file=io.StringIO())
    monkeypatch.setattr(cli, "console", console)
    code, out = invoke(command)
    assert code == 0, out
    text = console.export_text()
    assert "…" not in text
    for name in WHOLE[command]:
        assert name in " ".join(text.split()), name  # whole, though a prose cell may wrap between words
    assert max(map(len, text.splitlines())) <= 80


def test_a_table_too_wide_becomes_records_and_a_wide_terminal_keeps_the_table() -> None:
    wide = Listing("t", ["name", "description"], [["channelwise2016", "a description " * 3]], prose={"description"})
    narrow = Listing("t", ["name", "a", "b", "c"], [["channelwise2016", "x" * 30, "y" * 30, "z" * 30]])
    assert "─" in terminal([wide], 80)  # the header rule of a table
    records = terminal([narrow], 80)
    assert "x" * 30 in records and "z" * 30 in records and "…" not in records
    assert "─" not in records


def test_a_table_is_chosen_only_when_every_cell_fits() -> None:
    """At every width: whatever is printed (table or records) holds every cell whole, and a table is printed whenever
    one fits (the eval table at 80 columns was once cut to "0.132±0.07" and "eval img/")."""
    rng = random.Random(0)
    for _ in range(12):
        columns = [f"c{i}" + "h" * rng.randint(0, 8) for i in range(rng.randint(2, 7))]
        rows = [["".join(rng.choice("abcdef±.") for _ in range(rng.randint(1, 15))) for _ in columns] for _ in range(2)]
        cells = {*columns, *(cell for row in rows for cell in row)}
        previous_table = False
        for width in range(40, 110):  # narrower, a records cell longer than the line would fold
            text = terminal([Listing("t", columns, rows)], width)
            assert cells <= set(text.split()), (width, columns, rows)
            table = "─" in text
            assert table or not previous_table, width  # wider never turns a table back into records
            previous_table = table
        assert previous_table  # 110 columns hold a table of at most 7 x 24 characters


def test_tune_trials_are_whole_at_80_columns() -> None:
    import pandas as pd

    from cebench.tune import print_table

    frame = pd.DataFrame([{"trial": n, "val_psnr": 20 + n / 3, "test_psnr": float("nan"), "lambda_adv": 0.001 * n,
                           "lambda_rec": 0.999, "lr_g": 2e-4, "lr_d": 2e-5, "beta1": 0.5} for n in range(3)])
    console = Console(width=80, force_terminal=True, record=True, file=io.StringIO())
    print_table(console, frame, "tune: best trials")
    text = console.export_text()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    assert {"lambda_adv", "lambda_rec", "test_psnr", "20.67", "0.002", "0.0002", "2e-05"} <= set(text.split())


def test_csv_and_json_parse_and_keep_numbers() -> None:
    code, out = invoke("baselines", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    joint = next(r for r in rows if r["row as printed"] == "Our Reconstruction (joint)")
    assert float(joint["PSNR"]) == pytest.approx(18.58) and joint["region"]
    code, out = invoke("baselines", "--format", "json")
    records = json.loads(out)
    assert any(r["PSNR"] == pytest.approx(18.58) for r in records) and "note" in records[0]
    code, out = invoke("list", "--format", "json")
    assert set(json.loads(out)) == {"variants", "components", "datasets", "metrics"}
    code, out = invoke("list", "variants", "--format", "csv")
    assert [r["name"] for r in csv.DictReader(io.StringIO(out))][:1] == ["channelwise2016"]


@pytest.mark.parametrize(("args", "needle"), [
    (["list", "--format", "csv"], "--format csv writes one table"),
    (["list", "--format", "xml"], "valid: table, csv, markdown, json"),
    (["list", "models"], "valid: variants, components, datasets, metrics"),
])
def test_format_mistakes_are_one_line_exit_2(args: list[str], needle: str) -> None:
    code, out = invoke(*args, columns=300)
    assert code == 2 and needle in out and "Traceback" not in out


def test_version_names_cebench_torch_and_cuda() -> None:
    import torch

    import cebench

    code, out = invoke("--version")
    assert code == 0
    assert out.startswith(f"cebench {cebench.__version__} ") and f"torch {torch.__version__}" in out and "CUDA" in out
    assert importlib.metadata.version("cebench") == cebench.__version__  # pyproject.toml and the package agree
    cuda = f"CUDA available, {torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "CUDA not available"
    assert out.rstrip().endswith(f"; {cuda})"), out


def test_version_counts_the_gpus_torch_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    code, out = invoke("--version")
    assert code == 0 and out.rstrip().endswith("; CUDA available, 2 GPU(s))"), out


def test_completion_is_installable() -> None:
    code, out = invoke("--help", columns=120)
    assert code == 0
    assert "--install-completion" in out and "--show-completion" in out
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="cebench")
    assert script.exit_code == 0 and "_CEBENCH_COMPLETE=complete_bash" in script.output
    for words, expected in (("cebench li", ["list"]), ("cebench run x.yaml --re", ["--resume", "--retry-diverged"])):
        # What the installed script asks for when Tab is pressed after `words`.
        env = {"_CEBENCH_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        done = runner.invoke(app, [], prog_name="cebench", env=env)
        assert done.exit_code == 0 and done.output.split() == expected, done.output


def _commands(group: typer.Typer, prefix: list[str]) -> list[list[str]]:
    names = [[*prefix, c.name or c.callback.__name__] for c in group.registered_commands]  # type: ignore[union-attr]
    for sub in group.registered_groups:
        names += _commands(sub.typer_instance, [*prefix, sub.name])  # type: ignore[arg-type, list-item]
    return names


def test_help_shows_flags_without_a_bool_type() -> None:
    commands = _commands(app, [])
    assert ["run"] in commands and ["data", "pack"] in commands
    for command in [[], *commands]:
        code, out = invoke(*command, "--help", columns=150)
        assert code == 0, command
        assert "<bool>" not in out, command
    code, out = invoke("run", "--help", columns=150)
    assert "--resume" in out and "--no-resume" not in out and "<path>" in out  # valued options keep their type


def test_postgres_storage_without_the_driver_says_which_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for driver in ("psycopg2", "psycopg"):
        monkeypatch.setitem(sys.modules, driver, None)  # `import psycopg2` now raises ImportError, as when not installed
    result = runner.invoke(app, ["tune", "ablations/tune.yaml", "--storage", "postgresql://u@127.0.0.1:9/db",
                                 "--out", str(tmp_path), "--trials", "1", "--device", "cpu"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "pip install -e '.[postgres]'" in lines[0] and "Traceback" not in result.output
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # refused before anything was trained or written


def test_score_csv_and_json_hold_the_numbers_of_the_per_image_file(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from tests.test_cli import score_folders

    score_folders(tmp_path, lambda truth: np.clip(truth.astype(int) + 9, 0, 255).astype(np.uint8))
    args = ["score", "--pred", tmp_path / "pred", "--target", tmp_path / "target", "--out", tmp_path / "s.csv",
            "--device", "cpu", "--no-classical"]
    result = runner.invoke(app, [str(a) for a in [*args, "--format", "csv"]])
    assert result.exit_code == 0, result.output
    rows = {r["metric"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    per_image = pd.read_csv(tmp_path / "s.csv")
    assert float(rows["psnr"]["mean"]) == pytest.approx(per_image["psnr"].mean())
    assert float(rows["psnr"]["std"]) == pytest.approx(per_image["psnr"].std(ddof=1))
    result = runner.invoke(app, [str(a) for a in [*args, "--format", "json"]])
    assert {r["metric"] for r in json.loads(result.stdout)} >= {"psnr", "ssim", "l1", "l2"}
