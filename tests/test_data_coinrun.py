"""Procgen generation: two short CoinRun episodes, level seeds, true actions, disjoint splits."""

from __future__ import annotations

import numpy as np
import pytest

from opengenie.data import coinrun_action_group, open_dataset
from opengenie.data.coinrun import (
    COINRUN_GROUP_NAMES,
    EpisodeTask,
    generate_procgen,
    run_procgen_episode,
)
from opengenie.data.info import describe, format_description
from opengenie.data.sources import resolve_levels
from opengenie.errors import UserError

pytest.importorskip("procgen", reason="needs procgen-mirror (pip install 'opengenie[coinrun]')")


@pytest.fixture(scope="module")
def two_episodes(tmp_path_factory):
    out = tmp_path_factory.mktemp("cr") / "ds"
    summary = generate_procgen(out, episodes=2, max_steps=12, workers=1)
    return out, summary


def test_two_short_episodes(two_episodes):
    out, summary = two_episodes
    assert summary == {"split": "train", "levels": (0, 2), "episodes": 2, "frames": 24}
    ds = open_dataset(out)
    assert (ds.fps, ds.frame_size, ds.num_episodes) == (15.0, (64, 64), 2)
    eps = ds.episodes()
    assert [e.level_seed for e in eps] == [0, 1]
    assert all(e.source == "procgen:coinrun:hard" and e.has_actions for e in eps)
    for e in eps:
        a = ds.actions(e.id)
        assert a.shape == (12,) and a.min() >= 0 and a.max() <= 14  # raw Procgen ids
        f = np.asarray(ds.frames(e.id))
        assert f.std() > 10  # real rendered frames, not blanks
    assert not np.array_equal(ds.frames(0)[0], ds.frames(1)[0])  # different levels
    # Generation is a function of (game, level, seed): regenerating level 1 gives the same data.
    again = run_procgen_episode(EpisodeTask("coinrun", level=1, seed=0, max_steps=12))
    np.testing.assert_array_equal(again["frames"], ds.frames(1))
    np.testing.assert_array_equal(again["actions"], ds.actions(1))
    assert ds.source_info["procgen:coinrun:hard"]["num_actions"] == 15


def test_episode_runs_until_the_game_ends_it():
    ep = run_procgen_episode(EpisodeTask("coinrun", level=0, seed=0, max_steps=None))
    assert 12 < len(ep["frames"]) <= 1000  # Procgen's cap is 1000 steps
    assert ep["frames"].shape[1:] == (64, 64, 3) and len(ep["actions"]) == len(ep["frames"])


def test_splits_are_disjoint_by_level(two_episodes, tmp_path):
    out, _ = two_episodes
    ds = open_dataset(out)
    # Default ranges: val starts at 100,000; a second train run continues after level 1.
    assert resolve_levels(ds, "procgen:coinrun:hard", "val", 3, None) == range(100_000, 100_003)
    assert resolve_levels(ds, "procgen:coinrun:hard", "train", 3, None) == range(2, 5)
    with pytest.raises(UserError, match="overlap split train's levels 0:2"):
        generate_procgen(out, levels="1:10", split="test", max_steps=5, workers=1)
    with pytest.raises(UserError, match="already in split train"):
        generate_procgen(out, episodes=1, levels="0:5", max_steps=5, workers=1)
    with pytest.raises(UserError, match="more than the 3 levels"):
        generate_procgen(out, episodes=4, levels="2:5", split="test", max_steps=5, workers=1)
    assert open_dataset(out).num_episodes == 2  # the refused runs wrote nothing
    # Another game may reuse level numbers: splits are disjoint per source.
    assert resolve_levels(ds, "procgen:ninja:hard", "test", None, "0:2") == range(0, 2)


def test_parallel_generation_matches_serial(tmp_path):
    serial = generate_procgen(tmp_path / "a", levels="7:9", split="val", max_steps=6, workers=1)
    parallel = generate_procgen(tmp_path / "b", levels="7:9", split="val", max_steps=6, workers=2)
    assert serial == parallel
    a, b = open_dataset(tmp_path / "a"), open_dataset(tmp_path / "b")
    for i in range(2):
        np.testing.assert_array_equal(a.frames(i), b.frames(i))
        np.testing.assert_array_equal(a.actions(i), b.actions(i))
    assert [e.split for e in a.episodes()] == ["val", "val"]


def test_bad_input(tmp_path):
    with pytest.raises(UserError, match="unknown Procgen game 'pacman'"):
        generate_procgen(tmp_path / "x", episodes=1, game="pacman")
    with pytest.raises(UserError, match="A:B"):
        generate_procgen(tmp_path / "x", levels="5-9")
    with pytest.raises(UserError, match="--episodes N"):
        generate_procgen(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_coinrun_action_groups():
    ids = np.arange(15)
    g = coinrun_action_group(ids)
    names = [COINRUN_GROUP_NAMES[i] for i in g]
    assert names[:9] == [
        "left", "left", "left+jump", "none", "none", "jump", "right", "right", "right+jump",
    ]  # fmt: skip
    assert set(names[9:]) == {"none"}  # the extra keys do nothing in CoinRun
    assert len(set(g.tolist())) == 6
    np.testing.assert_array_equal(coinrun_action_group([[-1, 8], [2, 4]]), [[-1, 5], [1, 2]])
    with pytest.raises(ValueError):
        coinrun_action_group([15])


def _runs(actions: np.ndarray) -> list[int]:
    """Lengths of the runs of equal consecutive actions."""
    edges = np.flatnonzero(np.diff(actions) != 0)
    return np.diff(np.concatenate(([-1], edges, [len(actions) - 1]))).tolist()


def test_held_policy_keeps_movements_and_travels(tmp_path):
    from opengenie.cli import main
    from opengenie.data.coinrun import HELD_ACTIONS, HeldPolicy

    held = run_procgen_episode(EpisodeTask("coinrun", 3, 0, 400, policy="held", hold=6))
    rand = run_procgen_episode(EpisodeTask("coinrun", 3, 0, 400))
    a = held["actions"].astype(np.int64)
    assert set(np.unique(a)) <= set(HELD_ACTIONS.tolist())  # CoinRun's six movements only
    assert np.mean(_runs(a)) > 3 * np.mean(_runs(rand["actions"].astype(np.int64)))
    # Over many frames: a new movement every `hold` frames on average, right half the time.
    policy = HeldPolicy(np.random.default_rng(0), "coinrun", 6)
    frames = np.array([policy() for _ in range(30_000)])
    assert np.isin(frames, [7, 8]).mean() == pytest.approx(0.5, abs=0.03)
    assert np.isin(frames, [1, 2]).mean() == pytest.approx(0.25, abs=0.03)
    # Through the CLI: --policy and --hold take effect and are stored with the true actions.
    out = tmp_path / "held"
    args = ["data", "coinrun", "--out", str(out), "--levels", "3:4", "--max-steps", "400"]
    assert main([*args, "--policy", "held", "--hold", "6", "--workers", "1"]) == 0
    np.testing.assert_array_equal(open_dataset(out).actions(0), held["actions"])
    with pytest.raises(UserError, match="--hold"):
        generate_procgen(tmp_path / "y", episodes=1, policy="held", hold=0)


def test_dataset_records_how_each_call_recorded_it(tmp_path):
    """Each `data coinrun` call appends its policy and options to the source's recordings,
    which `data info` prints as options; earlier recordings are kept."""
    out = tmp_path / "ds"
    generate_procgen(out, episodes=2, max_steps=5, workers=1)
    generate_procgen(out, split="val", episodes=1, max_steps=6, policy="held", hold=3, workers=1)
    generate_procgen(out, split="val", episodes=1, max_steps=6, workers=1, seed=7)
    ds = open_dataset(out)
    info = ds.source_info["procgen:coinrun:hard"]
    assert info["num_actions"] == 15  # set again by each call, the recordings kept beside it
    first, held, seeded = info["recordings"]
    assert first == {
        "split": "train", "levels": [0, 2], "episodes": 2, "policy": "random", "mode": "hard",
        "seed": 0, "max_steps": 5,
    }  # fmt: skip
    assert held["policy"] == "held" and held["hold"] == 3 and held["levels"] == [100_000, 100_001]
    assert seeded["seed"] == 7 and seeded["levels"] == [100_001, 100_002]
    text = format_description(describe(ds))
    assert "recorded 2 episodes of levels 0:2: --policy random --mode hard --max-steps 5" in text
    assert "--policy held --hold 3 --mode hard --max-steps 6" in text
    assert "--max-steps 6 --seed 7" in text
