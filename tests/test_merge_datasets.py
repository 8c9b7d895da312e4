"""scripts/merge_datasets.py: one dataset listing the episodes of several, frames unchanged."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from opengenie.data.storage import open_dataset
from opengenie.data.synthetic import make_synthetic_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "merge_datasets.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_merge_lists_every_episode_of_both_with_its_frames(tmp_path) -> None:
    a = make_synthetic_dataset(tmp_path / "a", episodes=3, length=12, seed=1)
    b = make_synthetic_dataset(tmp_path / "b", episodes=2, length=9, seed=2, split="val")
    done = _run(str(a.path), str(b.path), "--out", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr
    merged = open_dataset(tmp_path / "m")
    assert merged.num_episodes == 5
    assert len(merged.episode_ids("train")) == 3 and len(merged.episode_ids("val")) == 2
    frames = [d.frames(i) for d in (a, b) for i in range(d.num_episodes)]
    for i, expected in enumerate(frames):
        assert np.array_equal(merged.frames(i), expected)


def test_merge_refuses_an_existing_out_and_mismatched_frames(tmp_path) -> None:
    a = make_synthetic_dataset(tmp_path / "a", episodes=1, length=8, size=16)
    c = make_synthetic_dataset(tmp_path / "c", episodes=1, length=8, size=32)
    done = _run(str(a.path), "--out", str(a.path))
    assert done.returncode != 0 and "exists" in done.stderr
    done = _run(str(a.path), str(c.path), "--out", str(tmp_path / "m"))
    assert done.returncode != 0 and "frame_size" in done.stderr
    assert not (tmp_path / "m" / "dataset.json").exists()


def test_merge_keeps_both_data_sets_recordings_of_a_source(tmp_path) -> None:
    a = make_synthetic_dataset(tmp_path / "a", episodes=1, length=8)
    b = make_synthetic_dataset(tmp_path / "b", episodes=1, length=8, split="val")
    for path, policy in [(a.path, "held"), (b.path, "random")]:  # as `data coinrun` records
        meta = json.loads((path / "dataset.json").read_text())
        for info in meta["source_info"].values():
            info["recordings"] = [{"policy": policy}]
        (path / "dataset.json").write_text(json.dumps(meta))
    done = _run(str(a.path), str(b.path), "--out", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr
    (info,) = open_dataset(tmp_path / "m").source_info.values()
    assert info["recordings"] == [{"policy": "held"}, {"policy": "random"}]
    assert "num_actions" in info
