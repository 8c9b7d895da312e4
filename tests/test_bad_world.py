"""A damaged World directory (weights, config.json, action_map.json) reaches the user as one
line `opengenie: error: ...` naming the damaged file, never as a traceback (issue 17)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from opengenie.cli import main
from opengenie.models.world import SHIPPED_WORLD


def _edit_config(world: Path, change) -> None:
    path = world / "config.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _edit_weights(world: Path, change) -> None:
    path = world / "model.safetensors"
    state = load_file(str(path))
    change(state)
    save_file(state, str(path))


def _add_stray(state: dict) -> None:
    state["stray"] = state["dynamics.pos"].clone()


def _set_dim(meta: dict, value) -> None:
    meta["config"]["dynamics"]["dim"] = value


W, C, A = "model.safetensors", "config.json", "action_map.json"
# case -> (the file it damages, which the message must name; new bytes, or a function of the
# world directory that damages it)
DAMAGE = {
    "weights-truncated": (W, lambda w: os.truncate(w / W, 5_000_000)),
    "weights-random": (W, random.Random(0).randbytes(4096)),
    "weights-empty": (W, b""),
    "weights-missing": (W, lambda w: (w / W).unlink()),
    "weights-tensor-missing": (W, lambda w: _edit_weights(w, lambda s: s.pop("dynamics.pos"))),
    "weights-tensor-extra": (W, lambda w: _edit_weights(w, _add_stray)),
    "config-invalid-json": (C, b'{"format": "opengenie-world",'),
    "config-binary": (C, b"\xff\xfe\x00garbage"),
    "config-list": (C, b"[1, 2, 3]"),
    "config-no-config": (C, b'{"format": "opengenie-world"}'),
    "config-wrong-type": (C, lambda w: _edit_config(w, lambda m: _set_dim(m, "big"))),
    "config-float-size": (C, lambda w: _edit_config(w, lambda m: _set_dim(m, 256.0))),
    "config-section-type": (C, lambda w: _edit_config(w, lambda m: m["config"].update(lam=7))),
    "config-size-mismatch": (C, lambda w: _edit_config(w, lambda m: _set_dim(m, 128))),
    "action-map-invalid-json": (A, b'{"keys": '),
    "action-map-list": (A, b"[0, 1]"),
    "action-map-bad-keys": (A, b'{"keys": {"left": "four"}}'),
    "action-map-bad-names": (A, b'{"names": ["jump"]}'),
}


def damaged_world(tmp_path: Path, case: str) -> tuple[Path, Path]:
    """A copy of the shipped world with one kind of damage, and the damaged file."""
    world = tmp_path / "world"
    shutil.copytree(SHIPPED_WORLD, world)
    name, damage = DAMAGE[case]
    if isinstance(damage, bytes):
        (world / name).write_bytes(damage)
    else:
        damage(world)
    return world, world / name


def assert_one_line_error(code: int, err: str, damaged: Path) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("opengenie: error: "), err
    assert str(damaged) in lines[0], err  # names the damaged file, full path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from opengenie.data import make_synthetic_dataset

    path = tmp_path_factory.mktemp("data") / "synthetic"
    make_synthetic_dataset(path, episodes=2, length=20, size=64, split="test")
    make_synthetic_dataset(path, episodes=2, length=20, size=64, split="train")
    return path


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_generate_reports_damage_in_one_line(case, tmp_path, capsys):
    world, damaged = damaged_world(tmp_path, case)
    out = tmp_path / "x.gif"
    code = main(["generate", "--world", str(world), "--actions", "0", "--out", str(out)])
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.err, damaged)
    assert not out.exists()


@pytest.mark.parametrize("case", ["weights-truncated", "config-wrong-type", "config-size-mismatch"])
def test_eval_reports_damage_before_any_work(case, tmp_path, tiny_data, capsys):
    world, damaged = damaged_world(tmp_path, case)
    out = tmp_path / "report"
    argv = ["eval", "--world", str(world), "--data", str(tiny_data), "--out", str(out)]
    code = main([*argv, "--clips", "2", "--quiet", "--no-action-map"])
    assert_one_line_error(code, capsys.readouterr().err, damaged)
    assert not out.exists()


@pytest.mark.parametrize(
    "case",
    ["weights-truncated", "weights-tensor-missing", "config-wrong-type", "config-size-mismatch"],
)
def test_train_init_from_reports_damage(case, tmp_path, tiny_data, capsys):
    world, damaged = damaged_world(tmp_path, case)
    out = tmp_path / "run"
    argv = ["train", "dynamics", "--data", str(tiny_data), "--out", str(out)]
    code = main([*argv, "--init-from", str(world), "--steps", "1", "--no-tensorboard"])
    assert_one_line_error(code, capsys.readouterr().err, damaged)
    assert not (out / "model.safetensors").exists()


@pytest.mark.parametrize("case", ["weights-truncated", "config-list"])
def test_console_script_prints_no_traceback(case, tmp_path):
    """The installed `opengenie` command, in its own process, as a user runs it."""
    world, damaged = damaged_world(tmp_path, case)
    out = tmp_path / "x.gif"
    script = Path(sys.executable).with_name("opengenie")
    argv = [str(script), "generate", "--world", str(world), "--actions", "0", "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, damaged)
    assert proc.stdout == ""
    assert not out.exists()


def test_intact_copy_still_generates(tmp_path):
    """The checks pass a whole world: the copy the damage cases start from generates."""
    world = tmp_path / "world"
    shutil.copytree(SHIPPED_WORLD, world)
    out = tmp_path / "x.gif"
    argv = ["generate", "--world", str(world), "--actions", "0", "--steps", "1", "--out", str(out)]
    assert main(argv) == 0
    assert out.stat().st_size > 0


@pytest.mark.parametrize("case", ["weights-truncated", "config-list", "action-map-bad-keys"])
def test_play_reports_damage_before_serving(case, tmp_path, capsys, monkeypatch):
    import opengenie.play.cli

    async def never_serve(*_args):
        raise AssertionError("play started serving a damaged world")

    monkeypatch.setattr(opengenie.play.cli, "_serve", never_serve)
    world, damaged = damaged_world(tmp_path, case)
    code = main(["play", "--world", str(world), "--no-browser", "--port", "0"])
    assert_one_line_error(code, capsys.readouterr().err, damaged)


@pytest.mark.parametrize("case", ["weights-random", "config-size-mismatch"])
def test_bench_play_reports_damage_and_writes_nothing(case, tmp_path, capsys):
    world, damaged = damaged_world(tmp_path, case)
    out = tmp_path / "play.json"
    code = main(["bench", "play", "--world", str(world), "--out", str(out), "--frames", "1"])
    assert_one_line_error(code, capsys.readouterr().err, damaged)
    assert not out.exists()
