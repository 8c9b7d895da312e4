"""A few labelled transitions for the LAM: a fixed subset, and codes that learn their labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from opengenie.models import LatentActionModel
from opengenie.models.dynamics import Dynamics
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


def _labelled_world(tmp_path, steps: int) -> list[str]:
    """A tokenizer and a world trained with lam.label_fraction=0.5 in tmp_path/w; returns the
    training arguments (data, steps, small sizes) for further runs."""
    from opengenie.cli import main
    from opengenie.data.coinrun import generate_procgen

    from .test_cli import SMALL, _sets

    data = tmp_path / "data"
    generate_procgen(data, episodes=2, max_steps=40, workers=1)
    sets = [s for s in SMALL if not s.startswith("image_size")]
    base = ["--data", str(data), "--steps", str(steps), "--no-tensorboard", *_sets(sets)]
    assert main(["train", "tokenizer", "--out", str(tmp_path / "tok"), *base]) == 0
    labelled = ["--set", "lam.label_fraction=0.5", "--tokenizer", str(tmp_path / "tok")]
    assert main(["train", "dynamics", "--out", str(tmp_path / "w"), *base, *labelled]) == 0
    return base


def test_training_with_labels_logs_the_label_loss(tmp_path) -> None:
    pytest.importorskip("procgen", reason="needs procgen-mirror (pip install 'opengenie[coinrun]')")
    _labelled_world(tmp_path, steps=2)
    rows = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert train and all(r["lam_label_ce"] > 0 for r in train)
    config = json.loads((tmp_path / "w" / "config.json").read_text())["config"]
    assert config["lam"]["label_fraction"] == 0.5


def test_label_codes_make_a_labelled_transition_take_its_movements_code(small_config) -> None:
    """With lam.label_codes, a labelled transition's action is code m of movement m (what the
    decoder and the dynamics model see), unlabelled ones keep their nearest code, and training
    pulls the encoder to the label's code, so that inference finds it without labels."""
    small_config.lam.label_fraction = 1.0
    small_config.lam.label_codes = True
    torch.manual_seed(0)
    lam = LatentActionModel(small_config).train()
    assert lam.quantizer.dead_code_steps == 0  # codes that name movements are never reset
    velocities, labels = (-3, 0, 3), (0, 2, 4)
    video = torch.stack([_moving_square(v) for v in velocities])  # (3, 4, 32, 32, 3)
    target = torch.tensor(labels)[:, None].expand(3, 3).clone()  # (3, T-1)
    target[0, 0] = -1  # one unknown transition keeps the encoder's nearest code
    out = lam(video, target)
    nearest = lam.infer(video)
    assert out["ids"][0, 0] == nearest[0, 0]
    known = target >= 0
    assert (out["ids"][known] == target[known]).all()
    codebook = lam.quantizer.codebook().detach()
    torch.testing.assert_close(out["actions"][1, 1].detach(), codebook[2])
    opt = torch.optim.Adam(lam.parameters(), lr=1e-3)
    target[0, 0] = 0
    for _ in range(150):
        out = lam(video, target)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    shifted = torch.stack([_moving_square(v).roll(4, dims=1) for v in velocities])
    assert lam.infer(shifted).tolist() == target.tolist()  # the codes are the movements


def test_label_codes_need_labels_and_a_vq_codebook_of_six(small_config) -> None:
    from opengenie.errors import UserError

    small_config.lam.label_codes = True
    with pytest.raises(UserError, match="label_codes"):
        small_config.validate()  # no labels
    small_config.lam.label_fraction = 0.5
    small_config.validate()
    small_config.lam.quantizer.codes = 4
    with pytest.raises(UserError, match="label_codes"):
        small_config.validate()


def test_a_label_code_world_pairs_keys_with_its_label_codes(small_config) -> None:
    from opengenie.eval.control import LABEL_PAIRING, LIFT_PAIRING, key_pairing
    from opengenie.eval.held_keys import MOVEMENTS
    from opengenie.models import World

    table = np.zeros((8, 6), dtype=np.int64)
    table[7, :] = 5  # the LAM's codes on the game's videos say nothing: all code 7
    table[3, 4] = 9  # ... except that → mostly gets code 3
    small_config.lam.label_fraction, small_config.lam.label_codes = 0.5, True
    keys, how = key_pairing(World(small_config), table)
    assert how == LABEL_PAIRING and keys == {name: m for m, name in enumerate(MOVEMENTS)}
    small_config.lam.label_codes = False
    keys, how = key_pairing(World(small_config), table)
    assert how == LIFT_PAIRING and keys["right"] == 3


def test_fine_tuning_a_world_takes_the_new_runs_label_choices(
    tmp_path, capsys, monkeypatch
) -> None:
    """--init-from WORLD keeps the World's sizes but the new run's LAM training choices, frame
    skip and clip length: here label codes on a world trained without them, and the head it had is
    dropped."""
    pytest.importorskip("procgen", reason="needs procgen-mirror (pip install 'opengenie[coinrun]')")
    from opengenie.cli import main
    from opengenie.models import World

    base = _labelled_world(tmp_path, steps=1)
    tuned = ["--init-from", str(tmp_path / "w"), "--set", "lam.label_fraction=1.0"]
    tuned += ["--set", "lam.label_codes=true", "--set", "frame_skip=2", "--set", "frames=3"]
    tuned += ["--set", "dynamics.clean_context=0.5", "--set", "dynamics.mask_rate_min=0.25"]
    tuned += ["--set", "dynamics.context_noise=0.1", "--set", "dynamics.changed_weight=2"]
    tuned += ["--set", "dynamics.context_noise_neighbours=3"]
    neighbours = []  # the noise table training set from the tokenizer's codebook
    original = Dynamics.set_noise_neighbours
    monkeypatch.setattr(
        Dynamics,
        "set_noise_neighbours",
        lambda self, book, k: (neighbours.append((book.shape, k)), original(self, book, k))[1],
    )
    assert main(["train", "dynamics", "--out", str(tmp_path / "w2"), *base, *tuned]) == 0
    assert [k for _, k in neighbours] == [3]
    world = World.load(tmp_path / "w2")
    assert world.config.lam.label_fraction == 1.0 and world.config.lam.label_codes
    assert world.config.dynamics.clean_context == 0.5  # the new run's masking, too
    assert world.config.dynamics.mask_rate_min == 0.25
    assert world.config.dynamics.context_noise == 0.1
    assert world.config.dynamics.changed_weight == 2.0
    assert world.config.dynamics.context_noise_neighbours == 3
    assert neighbours[0][0] == world.tokenizer.quantizer.codebook().shape  # (V, C)
    assert world.lam.label_head is None
    assert world.config.frame_skip == 2  # the new run's frame skip, on the World's sizes
    assert world.config.frames == 3 and World.load(tmp_path / "w").config.frames == 4  # clips
    source = World.load(tmp_path / "w")
    torch.testing.assert_close(  # the tokenizer came over from the first world, untouched
        world.tokenizer.state_dict()["quantizer.embedding"],
        source.tokenizer.state_dict()["quantizer.embedding"],
    )
    # A size cannot follow the new run: said in one line, not silently kept.
    resized = [*tuned, "--set", "dynamics.ffn=96"]
    assert main(["train", "dynamics", "--out", str(tmp_path / "w3"), *base, *resized]) == 2
    err = capsys.readouterr().err
    assert "--set dynamics.ffn does not apply with --init-from" in err and "Traceback" not in err
