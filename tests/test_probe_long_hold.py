"""scripts/probe_long_hold.py: its --start option chooses where the key is held from."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "probe_long_hold.py"


def _script():
    spec = importlib.util.spec_from_file_location("probe_long_hold", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_start_mid_holds_left_from_where_the_game_can_run_back():
    pytest.importorskip("procgen", reason="needs procgen-mirror (pip install 'opengenie[coinrun]')")
    probe = _script()
    level, hold, skip = 200001, 4, 4
    first = probe.game_frames(level, "left", hold, skip, "first")
    mid = probe.game_frames(level, "left", hold, skip, "mid")
    assert len(first) == len(mid) == 1 + hold  # the start, then one frame per world step
    assert not np.array_equal(first[0], mid[0])  # another start frame
    # From the level's first frame the player stands at the level's left edge: no scroll;
    # from eval's mid-level start it runs back left.
    assert abs(probe.scroll(first)[0]) < 4
    assert probe.scroll(mid)[0] <= -4
