from __future__ import annotations

from pathlib import Path

import pytest

from cebench.errors import UserError
from cebench.spec import expand, load_spec

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_expand_is_axes_product_times_seeds(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, """
name: grid
preset: landscape2023
overrides: {image_size: 32, width: 8}
axes: {channels: [rgb, gray], loss: [l2, joint]}
seeds: [0, 1]
epochs: 3
"""))
    plans = expand(spec)
    assert len(plans) == 8
    assert len({p.run_id for p in plans}) == 8
    assert plans[0].run_id == "channels=rgb-loss=l2-seed0"
    assert {p.variant.epochs for p in plans} == {3}
    assert plans[-1].variant.channels == "gray" and plans[-1].variant.discriminator == "context"


@pytest.mark.parametrize(("text", "needle"), [
    ("name: x\nbogus: 1\n", "bogus: unknown field; valid: name, description, preset"),
    ("name: x\noverrides: {lr: 1}\n", "unknown variant field 'lr'; valid: image_size"),
    ("name: x\npreset: nope\n", "unknown preset 'nope'; valid: channelwise2016"),
    ("name: x\naxes: {loss: [l2, l3]}\n", "loss: Input should be 'l2' or 'joint'"),
    ("name: x\ndata: {name: web}\n", "data.name: Input should be 'landscapes', 'folder' or 'pack'"),
    ("name: x\ndata: {colour: 1}\n", "data.colour: unknown field; valid: name, path"),
    ("name: x\naxes: {loss: []}\n", "axis 'loss' has no values"),
    ("name: [x\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_bad_specs_name_file_and_field(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(UserError) as err:
        load_spec(write(tmp_path, text))
    assert str(tmp_path / "spec.yaml") in str(err.value)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "ablations").glob("*.yaml") if not p.name.startswith("tune")))
def test_shipped_specs_are_valid(name: str) -> None:
    assert expand(load_spec(ROOT / "ablations" / name))
