"""ClipLoader: windows inside episodes, true actions, determinism, exact resume, DDP sharding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from opengenie.data import (
    ClipLoader,
    DatasetWriter,
    PrefetchLoader,
    make_synthetic_dataset,
    open_dataset,
)
from opengenie.errors import UserError

LENGTHS = [20, 17, 5, 33, 16, 40, 18]  # one (5) is shorter than a 16-frame window


def _tagged(path, lengths=LENGTHS, split="train", shard_frames=40):
    """Frames carry (episode, t) in pixel (0, 0); actions are (7 * t + episode) % 15."""
    with DatasetWriter(path, fps=10, size=8, shard_bytes=shard_frames * 8 * 8 * 3) as w:
        for e, n in enumerate(lengths):
            f = np.zeros((n, 8, 8, 3), np.uint8)  # (T, H, W, 3)
            f[:, 0, 0, 0] = e
            f[:, 0, 0, 1] = np.arange(n) % 256
            f[:, 0, 0, 2] = np.arange(n) // 256
            w.add_episode(f, (7 * np.arange(n) + e) % 15, source="tag", level_seed=e, split=split)
    return open_dataset(path)


def test_windows_never_cross_episodes_and_actions_align(tmp_path):
    ds = _tagged(tmp_path / "ds")
    assert len(ds.shards) > 1
    for skip in (1, 2):
        loader = ClipLoader(ds, clip_frames=8, batch_size=16, frame_skip=skip, seed=3)
        starts_seen = set()
        for _ in range(30):
            b = next(loader)
            fr, act = b["frames"], b["actions"]
            assert fr.dtype == torch.uint8 and fr.shape == (16, 8, 8, 8, 3)
            assert act.dtype == torch.int64 and act.shape == (16, 7)
            ep = fr[:, :, 0, 0, 0].long()  # (B, T)
            t = fr[:, :, 0, 0, 1].long() + 256 * fr[:, :, 0, 0, 2].long()  # (B, T)
            assert (ep == ep[:, :1]).all(), "a window crossed an episode boundary"
            assert (t.diff(dim=1) == skip).all()
            assert (ep[:, 0] == b["episode"]).all() and (t[:, 0] == b["start"]).all()
            lengths = torch.tensor(LENGTHS)[ep[:, 0]]
            assert (t[:, -1] < lengths).all()
            if skip == 1:  # action between frame t and t+1 is the one stored at t
                assert torch.equal(act, (7 * t[:, :-1] + ep[:, :-1]) % 15)
            else:  # two different underlying actions per step: unknown
                assert (act == -1).all()
            starts_seen.update(zip(b["episode"].tolist(), b["start"].tolist(), strict=True))
        # Every episode long enough gets windows, including starts at both ends.
        assert {e for e, _ in starts_seen} == {e for e, n in enumerate(LENGTHS) if n >= 8 * skip}


def test_frame_skip_keeps_actions_when_the_skipped_ones_agree(tmp_path):
    with DatasetWriter(tmp_path / "ds", fps=10, size=8) as w:
        w.add_episode(np.zeros((12, 8, 8, 3), np.uint8), np.full(12, 4), source="c")
    b = next(ClipLoader(open_dataset(tmp_path / "ds"), clip_frames=4, frame_skip=3, batch_size=2))
    assert (b["actions"] == 4).all()


def test_episodes_without_actions_give_minus_one(tmp_path):
    ds = make_synthetic_dataset(tmp_path / "ds", episodes=2, length=20, with_actions=False)
    b = next(ClipLoader(ds, clip_frames=16))
    assert (b["actions"] == -1).all()


def test_deterministic_for_a_seed(tmp_path):
    ds = _tagged(tmp_path / "ds")
    a = [next(ClipLoader(ds, seed=1)) for _ in range(2)]
    assert torch.equal(a[0]["frames"], a[1]["frames"])
    l1, l2, l3 = (ClipLoader(ds, seed=s) for s in (1, 1, 2))
    for _ in range(5):
        b1, b2, b3 = next(l1), next(l2), next(l3)
        assert torch.equal(b1["frames"], b2["frames"]) and torch.equal(b1["actions"], b2["actions"])
    assert not torch.equal(b1["start"], b3["start"]) or not torch.equal(
        b1["episode"], b3["episode"]
    )


def test_exact_resume_from_json_state(tmp_path):
    ds = _tagged(tmp_path / "ds")
    ref = ClipLoader(ds, seed=7, batch_size=4)
    expected = [next(ref) for _ in range(8)]
    run = ClipLoader(ds, seed=7, batch_size=4)
    for _ in range(3):
        next(run)
    state = json.loads(json.dumps(run.state_dict()))  # must survive a JSON checkpoint
    resumed = ClipLoader(open_dataset(tmp_path / "ds"), seed=0, batch_size=4)  # seed from state
    resumed.load_state_dict(state)
    for want in expected[3:]:
        got = next(resumed)
        for key in ("frames", "actions", "episode", "start"):
            assert torch.equal(got[key], want[key])
    with pytest.raises(UserError, match="clip_frames"):
        ClipLoader(ds, clip_frames=8, batch_size=4).load_state_dict(state)


def _same(got: dict, want: dict) -> bool:
    return all(torch.equal(got[k], want[k]) for k in ("frames", "actions", "episode", "start"))


def test_prefetch_changes_no_batch_and_resumes_exactly(tmp_path):
    ds = _tagged(tmp_path / "ds")
    ref = ClipLoader(ds, seed=7, batch_size=4)
    expected = [next(ref) for _ in range(8)]
    run = PrefetchLoader(ClipLoader(ds, seed=7, batch_size=4))
    for want in expected[:3]:
        assert _same(next(run), want)
    # The fourth batch is read ahead; the state must still point at it.
    run._settle()
    state = json.loads(json.dumps(run.state_dict()))
    assert run.loader.batches == 4 and state["batches"] == 3
    resumed = ClipLoader(open_dataset(tmp_path / "ds"), seed=0, batch_size=4)
    resumed.load_state_dict(state)
    assert _same(next(resumed), expected[3])
    # Loading a state into the prefetcher drops what it had read ahead.
    run.load_state_dict(state)
    assert run.state_dict()["batches"] == 3
    for want in expected[3:]:
        assert _same(next(run), want)
    run.close()


def test_prefetch_reads_in_another_thread_and_reraises_its_errors(tmp_path):
    ds = _tagged(tmp_path / "ds")
    threads = []

    class Recording(ClipLoader):
        def __next__(self):
            import threading

            threads.append(threading.current_thread().name)
            if self.batches == 2:
                raise OSError("disk gone")
            return super().__next__()

    run = PrefetchLoader(Recording(ds, seed=1, batch_size=2))
    next(run)  # batch 0 read here, batch 1 read ahead
    next(run)  # batch 2 is read ahead and fails: reported when it is asked for
    assert threads[0] == "MainThread" and threads[1].startswith("opengenie-prefetch")
    with pytest.raises(OSError, match="disk gone"):
        next(run)
    # Only that next() raises: a training loop can still save its place and shut the thread.
    assert run.state_dict()["batches"] == 2
    run.close()
    assert not run._pool._threads or not any(t.is_alive() for t in run._pool._threads)


def test_ranks_read_disjoint_episodes_covering_the_split(tmp_path):
    ds = _tagged(tmp_path / "ds")
    loaders = [ClipLoader(ds, rank=r, world_size=2, clip_frames=16) for r in range(2)]
    sets = [set(ld.episode_ids.tolist()) for ld in loaders]
    assert sets[0].isdisjoint(sets[1])
    assert sets[0] | sets[1] == {e for e, n in enumerate(LENGTHS) if n >= 16}
    for r, ld in enumerate(loaders):
        for _ in range(10):
            assert set(next(ld)["episode"].tolist()) <= sets[r]
    # Same seed, different rank: different streams.
    assert not torch.equal(next(loaders[0])["frames"], next(loaders[1])["frames"])
    with pytest.raises(UserError, match="fewer than the 9 ranks"):
        ClipLoader(ds, rank=0, world_size=9, clip_frames=16)


def test_splits_are_separate(tmp_path):
    path = tmp_path / "ds"
    make_synthetic_dataset(path, episodes=3, length=20)
    make_synthetic_dataset(path, episodes=2, length=20, split="val")
    ds = open_dataset(path)
    val_ids = set(ds.episode_ids("val").tolist())
    loader = ClipLoader(ds, split="val", seed=0)
    for _ in range(5):
        assert set(next(loader)["episode"].tolist()) <= val_ids
    with pytest.raises(UserError, match="no episodes in split 'test'"):
        ClipLoader(ds, split="test")


def test_window_longer_than_every_episode_is_a_user_error(tmp_path):
    ds = _tagged(tmp_path / "ds")
    with pytest.raises(UserError, match="longer than every episode.*longest 40"):
        ClipLoader(ds, clip_frames=41)
    with pytest.raises(UserError, match="spans 43 frames"):
        ClipLoader(ds, clip_frames=15, frame_skip=3)
    ClipLoader(ds, clip_frames=40)  # exactly the longest episode is fine
