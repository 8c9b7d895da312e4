"""Shards + index: round trip, bounded shards, append, atomicity, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from opengenie.data import DatasetWriter, make_synthetic_dataset, open_dataset
from opengenie.data.storage import Dataset
from opengenie.errors import UserError


def _episode(t: int, size: int = 8, tag: int = 0) -> np.ndarray:
    rng = np.random.default_rng(tag)
    return rng.integers(0, 256, size=(t, size, size, 3), dtype=np.uint8)  # (T, H, W, 3)


def test_round_trip_frames_actions_and_index(tmp_path):
    path = tmp_path / "ds"
    eps = [_episode(5, tag=0), _episode(7, tag=1), _episode(3, tag=2)]
    with DatasetWriter(path, fps=12.5, size=8) as w:
        w.add_episode(eps[0], np.arange(5), source="a", level_seed=3, split="train")
        w.add_episode(eps[1], np.arange(6) + 1, source="b", level_seed=None, split="val")
        w.add_episode(eps[2], None, source="a", level_seed=9, split="test")
    ds = open_dataset(path)
    assert (ds.fps, ds.frame_size, ds.num_episodes, ds.num_frames) == (12.5, (8, 8), 3, 15)
    for i, e in enumerate(eps):
        np.testing.assert_array_equal(ds.frames(i), e)
    np.testing.assert_array_equal(ds.actions(0), np.arange(5))
    np.testing.assert_array_equal(ds.actions(1), [1, 2, 3, 4, 5, 6, -1])  # T-1 given: last unknown
    np.testing.assert_array_equal(ds.actions(2), [-1, -1, -1])
    e1 = ds.episodes("val")[0]
    assert (e1.source, e1.level_seed, e1.has_actions, e1.length) == ("b", None, True, 7)
    assert [e.level_seed for e in ds.episodes("train")] == [3]
    assert not ds.episodes("test")[0].has_actions
    assert list(ds.levels("test", "a")) == [9]
    assert ds.frames(0).flags.writeable is False  # memory-mapped read-only


def test_shards_are_bounded_and_episodes_never_split(tmp_path):
    frame_bytes = 8 * 8 * 3
    lengths = [10, 4, 9, 3, 12, 1]
    with DatasetWriter(tmp_path / "ds", fps=10, size=8, shard_bytes=16 * frame_bytes) as w:
        for i, n in enumerate(lengths):
            w.add_episode(_episode(n, tag=i), source="s")
    ds = open_dataset(tmp_path / "ds")
    assert len(ds.shards) > 1
    for s, name in enumerate(ds.shards):
        size = os.path.getsize(tmp_path / "ds" / "shards" / f"{name}.frames")
        assert size <= 16 * frame_bytes
        eps = np.flatnonzero(ds.ep_shard == s)
        assert ds.ep_length[eps].sum() * frame_bytes == size  # whole episodes only
    for i, n in enumerate(lengths):
        np.testing.assert_array_equal(ds.frames(i), _episode(n, tag=i))


def test_append_keeps_old_episodes_and_checks_format(tmp_path):
    path = tmp_path / "ds"
    make_synthetic_dataset(path, episodes=2, length=10, size=8)
    before = open_dataset(path)
    old = np.array(before.frames(1))
    make_synthetic_dataset(path, episodes=3, length=6, size=8, split="val")
    ds = open_dataset(path)
    assert ds.num_episodes == 5 and ds.num_frames == 2 * 10 + 3 * 6
    np.testing.assert_array_equal(ds.frames(1), old)
    assert list(ds.levels("val")) == [100_000, 100_001, 100_002]
    with pytest.raises(UserError, match="--size/--fps"):
        DatasetWriter(path, fps=10, size=16)
    assert open_dataset(path).num_episodes == 5


def test_exception_inside_writer_leaves_nothing_half_written(tmp_path):
    path = tmp_path / "new"
    with pytest.raises(RuntimeError), DatasetWriter(path, fps=10, size=8) as w:
        w.add_episode(_episode(4), source="s")
        raise RuntimeError("crash")
    assert not path.exists()  # created by the writer, nothing published: removed

    existing = tmp_path / "old"
    make_synthetic_dataset(existing, episodes=2, length=5, size=8)
    meta = (existing / "dataset.json").read_text()
    with pytest.raises(RuntimeError), DatasetWriter(existing, fps=10, size=8) as w:
        w.add_episode(_episode(4), source="s")
        raise RuntimeError("crash")
    assert (existing / "dataset.json").read_text() == meta
    assert open_dataset(existing).num_episodes == 2
    assert not list(existing.glob(".tmp-*"))
    assert sorted(p.name for p in (existing / "shards").iterdir()) == [
        "shard-000000.actions",
        "shard-000000.frames",
        "shard-000000.json",
    ]


def test_leftovers_of_a_killed_writer_are_ignored_then_cleaned(tmp_path):
    path = tmp_path / "ds"
    make_synthetic_dataset(path, episodes=2, length=5, size=8)
    # A writer killed after renaming a shard in but before the dataset.json commit point:
    (path / "shards" / "shard-000001.frames").write_bytes(b"junk")
    (path / "shards" / "shard-000001.json").write_text("{broken")
    (path / ".tmp-dead").mkdir()
    (path / ".tmp-dead" / "shard-000009.frames").write_bytes(b"junk")
    assert open_dataset(path).num_episodes == 2  # readers only see committed shards
    make_synthetic_dataset(path, episodes=1, length=5, size=8)
    ds = open_dataset(path)
    assert ds.num_episodes == 3 and ds.shards == ["shard-000000", "shard-000001"]
    assert not (path / ".tmp-dead").exists()
    assert json.loads((path / "shards" / "shard-000001.json").read_text())["frames"] == 5


def test_checkpoint_publishes_only_full_shards(tmp_path):
    path = tmp_path / "ds"
    w = DatasetWriter(path, fps=10, size=8, shard_bytes=4 * 8 * 8 * 3)
    w.add_episode(_episode(4), source="s")  # fills shard 0
    w.add_episode(_episode(2), source="s")  # open shard 1
    assert w.checkpoint() == 1
    assert Dataset(path).num_episodes == 1
    w.abort()  # e.g. Ctrl-C: the published prefix stays, the open shard goes
    ds = open_dataset(path)
    assert ds.num_episodes == 1 and ds.num_frames == 4


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "ds"
    w = DatasetWriter(path, fps=10, size=8)
    with pytest.raises(UserError, match="another process is writing"):
        DatasetWriter(path, fps=10, size=8)
    w.add_episode(_episode(3), source="s")
    w.close()
    with DatasetWriter(path, fps=10, size=8) as w2:  # lock released by close()
        w2.add_episode(_episode(3), source="s")
    assert open_dataset(path).num_episodes == 2


def test_bad_dataset_paths_give_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no dataset"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a dataset directory"):
        open_dataset(tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not an opengenie dataset"):
        DatasetWriter(tmp_path / "other", fps=10, size=8)
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]
    # A failed writer into an existing empty directory leaves it empty.
    (tmp_path / "pre").mkdir()
    with pytest.raises(RuntimeError), DatasetWriter(tmp_path / "pre", fps=10, size=8) as w:
        w.add_episode(_episode(2), source="s")
        raise RuntimeError("crash")
    assert list((tmp_path / "pre").iterdir()) == []
    # A writer that adds nothing leaves no empty dataset behind.
    DatasetWriter(tmp_path / "nothing", fps=10, size=8).close()
    assert not (tmp_path / "nothing").exists()
    for err in (UserError,):
        with pytest.raises(err):
            open_dataset(tmp_path / "nothing")


def test_damaged_shards_give_one_line_errors(tmp_path):
    path = tmp_path / "ds"
    make_synthetic_dataset(path, episodes=2, length=5, size=8)
    frames = path / "shards" / "shard-000000.frames"
    whole = frames.read_bytes()
    ds = open_dataset(path)
    frames.write_bytes(whole[:-10])  # truncated after open: found when the shard is mapped
    with pytest.raises(UserError, match="shard-000000.frames is damaged: .* bytes, but its index"):
        ds.frames(0)
    with pytest.raises(UserError, match="shard-000000.frames is damaged"):  # and on open
        open_dataset(path)
    frames.write_bytes(whole)
    (path / "shards" / "shard-000000.json").unlink()
    with pytest.raises(UserError, match="shard-000000.json is damaged: the file is missing"):
        open_dataset(path)


def test_add_episode_validates_shapes(tmp_path):
    with DatasetWriter(tmp_path / "ds", fps=10, size=8) as w:
        with pytest.raises(ValueError, match="uint8"):
            w.add_episode(np.zeros((3, 8, 8, 3), np.float32))
        with pytest.raises(ValueError, match="uint8"):
            w.add_episode(np.zeros((3, 4, 8, 3), np.uint8))
        with pytest.raises(ValueError, match="T or T-1"):
            w.add_episode(np.zeros((3, 8, 8, 3), np.uint8), np.zeros(5))
        w.add_episode(np.zeros((3, 8, 8, 3), np.uint8))
    assert open_dataset(tmp_path / "ds").num_episodes == 1
