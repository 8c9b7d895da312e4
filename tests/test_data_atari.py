"""Atari through gymnasium + ale-py (optional extra)."""

from __future__ import annotations

import numpy as np
import pytest

from opengenie.data import open_dataset
from opengenie.data.atari import check_game, generate_atari
from opengenie.errors import UserError

pytest.importorskip(
    "gymnasium", reason="Atari needs the optional extra: pip install 'opengenie[atari]'"
)
pytest.importorskip(
    "ale_py", reason="Atari needs the optional extra: pip install 'opengenie[atari]'"
)


def test_generates_resized_frames_and_actions(tmp_path):
    s = generate_atari(tmp_path / "ds", "pong", episodes=2, size=32, max_steps=8, workers=1)
    assert s == {"game": "Pong", "split": "train", "levels": (0, 2), "episodes": 2, "frames": 16}
    ds = open_dataset(tmp_path / "ds")
    assert ds.frame_size == (32, 32) and ds.fps == 15.0  # 60 Hz / frameskip 4
    src = "atari:Pong:frameskip4:sticky0"
    assert {e.source for e in ds.episodes()} == {src}
    n = ds.source_info[src]["num_actions"]
    assert n == 6
    for e in ds.episodes():
        a = ds.actions(e.id)
        assert a.shape == (8,) and a.min() >= 0 and a.max() < n
        assert np.asarray(ds.frames(e.id)).std() > 5


def test_unknown_game_is_a_user_error(tmp_path):
    assert check_game("ms_pacman") == "MsPacman"
    with pytest.raises(UserError, match="unknown Atari game 'Pongg'.*Pong"):
        generate_atari(tmp_path / "ds", "Pongg", episodes=1)
    assert not (tmp_path / "ds").exists()


def test_the_cli_writes_atari_episodes(tmp_path, capsys):
    from opengenie.cli import main

    out = tmp_path / "ds"
    args = ["data", "atari", "--out", str(out), "--game", "Pong", "--episodes", "1"]
    assert main([*args, "--max-steps", "4", "--workers", "1"]) == 0
    assert open_dataset(out).num_episodes == 1
    assert "wrote 1 Pong episodes" in capsys.readouterr().out
