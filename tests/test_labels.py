"""A few labelled transitions for the LAM: a fixed subset, and codes that learn their labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from opengenie.models import LatentActionModel
from opengenie.train.labels import labelled_mask, movement_labels


def test_the_labelled_subset_is_fixed_and_the_asked_share() -> None:
    episode = np.repeat(np.arange(200), 500)
    frame = np.tile(np.arange(500), 200)
    mask = labelled_mask(episode, frame, 0.025)
    assert mask.mean() == pytest.approx(0.025, abs=0.003)
    np.testing.assert_array_equal(mask, labelled_mask(episode, frame, 0.025))  # same each time
    assert not labelled_mask(episode, frame, 0.0).any() and labelled_mask(episode, frame, 1).all()
    # Nested: a larger fraction keeps every label of a smaller one.
    assert (labelled_mask(episode, frame, 0.1) | ~mask).all()


def test_movement_labels_of_a_batch() -> None:
    batch = {
        "actions": torch.tensor([[7, 1, -1], [4, 8, 2]]),  # Procgen ids; -1 unknown
        "episode": torch.tensor([3, 4]),
        "start": torch.tensor([10, 0]),
    }
    every = movement_labels(batch, 1.0)
    assert every.tolist() == [[4, 0, -1], [2, 5, 1]]  # right, left, ?; none, right+jump, left+jump
    assert (movement_labels(batch, 0.0) == -1).all()


def _moving_square(velocity: int, frames: int = 4, size: int = 32) -> torch.Tensor:
    clip = torch.full((frames, size, size, 3), 0.2)
    for t in range(frames):
        x = 12 + velocity * t
        clip[t, 10:20, x : x + 6] = 1.0
    return clip


def test_the_label_head_learns_the_labelled_movements(small_config) -> None:
    """Squares moving left, standing and moving right, labelled 0, 2 and 4: after a short
    training with the label loss its head predicts those labels on clips it was not trained
    on. (Whether the codes then follow the movements is for eval's control section to say.)"""
    small_config.lam.label_fraction = 1.0
    small_config.lam.quantizer.dead_code_steps = 0  # 5 of 8 codes stay unused here: keep them
    torch.manual_seed(0)
    lam = LatentActionModel(small_config).train()
    opt = torch.optim.Adam(lam.parameters(), lr=1e-3)
    velocities, labels = (-3, 0, 3), (0, 2, 4)
    video = torch.stack([_moving_square(v) for v in velocities])  # (3, 4, 32, 32, 3)
    target = torch.tensor(labels)[:, None].expand(3, 3)  # (3, T-1)
    first = None
    for _ in range(150):
        out = lam(video, target)
        first = float(out["label_loss"]) if first is None else first
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(out["label_loss"]) < 0.2 * first
    shifted = torch.stack([_moving_square(v).roll(4, dims=1) for v in velocities])  # lower down
    lam.eval()
    with torch.no_grad():
        predicted = lam.label_head(lam._continuous_actions(shifted)).argmax(-1)
    assert predicted.tolist() == target.tolist()
    assert float(lam(video)["label_loss"]) == 0.0  # no labels, no label loss
    small_config.lam.label_fraction = 0.0
    assert LatentActionModel(small_config).label_head is None  # no labels, no extra weights


def test_training_with_labels_logs_the_label_loss(tmp_path) -> None:
    pytest.importorskip("procgen", reason="needs procgen-mirror (pip install 'opengenie[coinrun]')")
    from opengenie.cli import main
    from opengenie.data.coinrun import generate_procgen

    from .test_cli import SMALL, _sets

    data = tmp_path / "data"
    generate_procgen(data, episodes=2, max_steps=40, workers=1)
    sets = [s for s in SMALL if not s.startswith("image_size")]
    base = ["--data", str(data), "--steps", "2", "--no-tensorboard", *_sets(sets)]
    assert main(["train", "tokenizer", "--out", str(tmp_path / "tok"), *base]) == 0
    labelled = ["--set", "lam.label_fraction=0.5", "--tokenizer", str(tmp_path / "tok")]
    assert main(["train", "dynamics", "--out", str(tmp_path / "w"), *base, *labelled]) == 0
    rows = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert train and all(r["lam_label_ce"] > 0 for r in train)
    config = json.loads((tmp_path / "w" / "config.json").read_text())["config"]
    assert config["lam"]["label_fraction"] == 0.5
