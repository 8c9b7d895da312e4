"""The evaluation protocol on inputs whose answers are known.

A stand-in world with the World's interface plays the synthetic "square" dataset by a known rule:
a lossless-enough pixel tokenizer, a LAM that reads the square's movement off the frames, and a
dynamics model whose logits put all mass on the rule's next frame. One variant obeys the action
(ΔtPSNR must be clearly positive), one ignores it (ΔtPSNR must be 0: same seeds for both).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from opengenie.config import preset
from opengenie.data import DatasetWriter, make_synthetic_dataset, open_dataset
from opengenie.eval.control import LABEL_PAIRING
from opengenie.eval.held_keys import MOVEMENTS
from opengenie.eval.protocol import (
    Clip,
    EvalSettings,
    cached_rollout,
    evaluate,
    load_clips,
    select_clips,
    true_action_labels,
)
from opengenie.models import World
from opengenie.models.maskgit import rollout

SIZE = 16  # synthetic frames: a 2x2 square moving 1 pixel per action
LEVELS = 4  # per colour channel in the stand-in tokenizer: 64 codes
MOVES = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0), 4: (0, 0)}  # synthetic action ids


class PixelTokenizer:
    """One token per pixel: each channel quantised to 4 levels (background < 96/255 lands in
    levels 0-1, the square >= 160/255 in levels 2-3, so the square is recognisable)."""

    def encode(self, video: torch.Tensor) -> torch.Tensor:  # (B,T,H,W,3) -> (B,T,H,W)
        q = (video * LEVELS).floor().clamp(0, LEVELS - 1).long()
        return q[..., 0] * LEVELS**2 + q[..., 1] * LEVELS + q[..., 2]

    def decode(self, ids: torch.Tensor) -> torch.Tensor:  # (B,T,H,W) -> (B,T,H,W,3)
        rgb = torch.stack((ids // LEVELS**2, (ids // LEVELS) % LEVELS, ids % LEVELS), dim=-1)
        return (rgb.float() + 0.5) / LEVELS


def _square_top_left(bright: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """bright (..., H, W) bool -> row and column of the square's top-left pixel (...)."""
    rows = bright.any(-1).float().argmax(-1)
    cols = bright.any(-2).float().argmax(-1)
    return rows, cols


class MovementLAM:
    """Infers the movement between frames: 0 left, 1 right, 2 up, 3 down, 4 none. Code 5 is
    never inferred: it must not count as "in use" nor be drawn as a random action."""

    num_actions = 6

    def infer(self, video: torch.Tensor) -> torch.Tensor:  # (B,T,H,W,3) -> (B,T-1)
        y, x = _square_top_left(video.amax(-1) >= 0.5)
        dy, dx = y[:, 1:] - y[:, :-1], x[:, 1:] - x[:, :-1]
        ids = torch.full_like(dy, 4)
        ids[dy > 0], ids[dy < 0], ids[dx > 0], ids[dx < 0] = 3, 2, 1, 0
        return ids

    def action_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return F.one_hot(ids.long(), self.num_actions).float()


class RuleDynamics:
    """step_logits puts (almost) all mass on the rule's next frame: the last committed frame
    with its square moved by the action (``obey``). Ignoring actions, the square stays but its
    pixels are a coin flip between square and background colour (equal logits), so generated
    frames depend on the sampling noise: ΔtPSNR is exactly 0 only if x̂ and x̂′ share it."""

    mask_id = LEVELS**3
    vocab = LEVELS**3

    def __init__(self, obey: bool) -> None:
        self.obey = obey
        self.calls = 0
        self.seen_codes: set[int] = set()
        self.transformer = SimpleNamespace(new_cache=lambda window: [])

    def _next(self, prev: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        grid = prev.view(prev.shape[0], SIZE, SIZE)  # (B, H, W)
        levels = torch.stack((grid // LEVELS**2, (grid // LEVELS) % LEVELS, grid % LEVELS), -1)
        bright = levels.amax(-1) >= 2
        y, x = _square_top_left(bright)
        out = torch.empty_like(grid)
        for b in range(grid.shape[0]):
            side = int(bright[b].sum().sqrt().round())
            bg = grid[b][~bright[b]][0]
            fg = grid[b, y[b], x[b]]
            code = int(action[b].argmax())
            self.seen_codes.add(code)
            dy, dx = MOVES.get(code, (0, 0)) if self.obey else (0, 0)
            ny = min(max(int(y[b]) + dy, 0), SIZE - side)
            nx = min(max(int(x[b]) + dx, 0), SIZE - side)
            out[b] = bg
            out[b, ny : ny + side, nx : nx + side] = fg
        return out.view(prev.shape)

    def commit(self, tokens, action, cache, context_mask=0.0):  # a final frame (B, 1, N)
        self.calls += 1  # joins the cache; rules need whole frames, so context_mask is unused
        cache.append(tokens[:, 0])

    def step_logits(self, tokens, action, cache, update_cache=False):  # (B,1,N) -> (B,1,N,V)
        self.calls += 1
        target = tokens[:, 0] if action is None else self._next(cache[-1], action)
        if update_cache:
            cache.append(tokens[:, 0])
        logits = F.one_hot(target, self.vocab).float() * 40.0  # (B, N, V)
        if action is not None and not self.obey:
            prev = cache[-2] if update_cache else cache[-1]
            bg = torch.mode(prev, dim=-1).values[:, None].expand_as(prev)  # (B, N)
            square = target != bg
            logits[square] = logits[square].scatter(-1, bg[square][:, None], 40.0)
        return logits[:, None]


def stand_in_world(obey: bool) -> SimpleNamespace:
    return SimpleNamespace(
        tokenizer=PixelTokenizer(),
        lam=MovementLAM(),
        dynamics=RuleDynamics(obey),
        num_actions=MovementLAM.num_actions,
        device=torch.device("cpu"),
        config=SimpleNamespace(
            frames=16,
            image_size=SIZE,
            name="rule",
            frame_skip=1,
            lam=SimpleNamespace(label_codes=False),
        ),
    )


@pytest.fixture(scope="module")
def square_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("square") / "data"
    make_synthetic_dataset(path, episodes=24, length=20, size=SIZE, split="test", num_actions=5)
    return open_dataset(path)


def _settings(**kw) -> EvalSettings:
    base = dict(clips=20, batch_size=10, extra=[], fvd_clips=0, bootstrap_resamples=2000)
    return EvalSettings(**{**base, "button_prompts": 0, **kw})


@pytest.fixture(scope="module")
def obeying(square_data):
    world = stand_in_world(obey=True)
    result = evaluate(world, square_data, _settings(), progress=False)
    assert world.dynamics.seen_codes == {0, 1, 2, 3, 4}  # never the unused code 5
    return result


def test_delta_psnr_positive_when_the_model_obeys_actions(obeying) -> None:
    result = obeying
    d = result.metrics["dynamics"]["delta_t_psnr"]
    assert d["value"] > 1.0 and d["ci_low"] > 0.0
    assert d["frame_psnr"] > d["frame_psnr_random"]
    assert d["t"] == 4 and d["steps"] == 25 and d["temperature"] == 1.0 and d["clips"] == 20
    # The rule reproduces every real token, so generated frames are as good as reconstructions.
    tok = result.metrics["tokenizer"]["psnr"]
    assert d["frame_psnr"] == pytest.approx(tok, abs=1.5)
    assert result.metrics["dynamics"]["next_frame_psnr"] == pytest.approx(tok, abs=1.5)


def test_delta_psnr_zero_when_the_model_ignores_actions(square_data, obeying) -> None:
    result = evaluate(stand_in_world(obey=False), square_data, _settings(), progress=False)
    d = result.metrics["dynamics"]["delta_t_psnr"]
    # Same prompt, same noise, actions without effect: x̂ and x̂′ are the same frames...
    assert d["value"] == 0.0 and d["ci_low"] == 0.0 and d["ci_high"] == 0.0
    # ... while the frames themselves depend on the noise: it must really be shared.
    first = np.array(square_data.frames(0)[None, :1])  # (1, 1, H, W, 3)
    prompt = PixelTokenizer().encode(torch.as_tensor(first) / 255.0)
    prompt = prompt.flatten(2).expand(4, 1, -1)  # (4, 1, N)
    lam = MovementLAM()
    moves, other_moves = torch.zeros(4, 4, dtype=torch.long), torch.ones(4, 4, dtype=torch.long)

    def run(codes: torch.Tensor, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return cached_rollout(
            RuleDynamics(obey=False), prompt, lam.action_vectors(codes), 5, 1.0, "random", g, 16
        )

    assert torch.equal(run(moves, 0), run(other_moves, 0))
    assert not torch.equal(run(moves, 0), run(moves, 1))
    # ... yet the frames are wrong where the square moved: PSNR below the obeying model's.
    assert d["frame_psnr"] < obeying.metrics["dynamics"]["delta_t_psnr"]["frame_psnr"] - 1.0


def test_action_consistency_and_action_map(obeying) -> None:
    result = obeying
    a = result.metrics["actions"]
    assert a["codes_used"] == [0, 1, 2, 3, 4] and a["code_fraction"][5] == 0.0
    assert sorted(a["groups"]) == ["down", "left", "noop", "right", "up"]
    # The movement LAM is right except at walls (a blocked move looks like "none").
    assert a["nmi"] > 0.5 and a["accuracy"] > 0.75
    amap = result.action_map
    assert amap["names"] == {"0": "left", "1": "right", "2": "up", "3": "down", "4": "noop"}
    assert amap["keys"] == {"left": 0, "right": 1, "up": 2, "down": 3, "noop": 4}
    assert amap["nmi"] == a["nmi"] and amap["accuracy"] == a["accuracy"]


def test_a_label_codes_world_keeps_its_pairing_without_the_control_section(square_data) -> None:
    """No game to replay here (synthetic data): a world trained with label codes still gets
    its own keys (code m = movement m), not the clips' one-to-one pairing of this data."""
    world = stand_in_world(obey=True)
    world.config.lam.label_codes = True
    result = evaluate(world, square_data, _settings(clips=4), progress=False)
    assert result.metrics["control"] is None
    keys = result.action_map["keys"]
    assert keys == {name: m for m, name in enumerate(MOVEMENTS)}
    assert result.action_map["pairing"] == LABEL_PAIRING
    assert result.action_map["names"] == {str(m): name for m, name in enumerate(MOVEMENTS)}


def test_extra_settings_are_reported_and_take_effect(square_data) -> None:
    world = stand_in_world(obey=True)
    result = evaluate(world, square_data, _settings(clips=4, extra=[(3, 1.0)]), progress=False)
    extra = result.metrics["dynamics"]["delta_t_psnr_extra"]
    assert [(e["steps"], e["temperature"], e["label"]) for e in extra] == [
        (3, 1.0, "steps=3, temperature=1")
    ]
    # Count the MaskGIT calls of a 4-frame rollout at 3 vs 25 steps on the stand-in.
    counts = {}
    for steps in (3, 25):
        dyn = RuleDynamics(obey=True)
        prompt = torch.zeros(2, 1, SIZE * SIZE, dtype=torch.long)
        acts = MovementLAM().action_vectors(torch.zeros(2, 4, dtype=torch.long))
        cached_rollout(dyn, prompt, acts, steps, 1.0, "random", None, 16)
        counts[steps] = dyn.calls
    # 1 prompt commit, then per frame: `steps` sampling calls + 1 commit (not after the last).
    assert counts == {3: 1 + 4 * 3 + 3, 25: 1 + 4 * 25 + 3}


def test_cached_rollout_matches_recomputed_rollout(small_config) -> None:
    world = World(small_config)  # frames=6: the window
    g = torch.Generator().manual_seed(0)
    n = small_config.token_grid**2
    prompt = torch.randint(0, 64, (3, 2, n), generator=g)
    acts = world.lam.action_vectors(torch.randint(0, world.num_actions, (3, 5), generator=g))
    for mode in ("argmax", "random"):
        a = rollout(world.dynamics, prompt, acts, 4, 1.0, mode, torch.Generator().manual_seed(1))
        b = cached_rollout(
            world.dynamics, prompt, acts, 4, 1.0, mode, torch.Generator().manual_seed(1), 6
        )
        assert a.shape == b.shape == (3, 6, n)
        assert torch.equal(a, b), mode
    # Guided, both paths put the still action into the new frame only: the same tokens again,
    # and other tokens than unguided.
    still = world.lam.action_vectors(torch.tensor([1]))  # (1, A)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = rollout(world.dynamics, prompt, acts, 4, 1.0, "argmax", g1, guidance=2.0, still=still)
    b = cached_rollout(world.dynamics, prompt, acts, 4, 1.0, "argmax", g2, 6, 2.0, still)
    assert torch.equal(a, b)
    plain = cached_rollout(world.dynamics, prompt, acts, 4, 1.0, "argmax", None, 6)
    assert not torch.equal(a, plain)
    # Context frames seen with a share of their tokens hidden: both paths hide the same ones.
    a = rollout(world.dynamics, prompt, acts, 4, 1.0, "argmax", None, context_mask=0.5)
    b = cached_rollout(world.dynamics, prompt, acts, 4, 1.0, "argmax", None, 6, context_mask=0.5)
    assert torch.equal(a, b) and not torch.equal(a, plain)


def test_select_clips_one_per_episode_when_possible() -> None:
    lengths = np.array([40, 10, 16, 100, 30])
    ids = np.arange(5) + 7
    clips = select_clips(lengths, ids, 3, 16, seed=0)
    assert len(clips) == 3 and len({c.episode for c in clips}) == 3
    assert 8 not in {c.episode for c in clips}  # too short
    assert clips == select_clips(lengths, ids, 3, 16, seed=0)  # seeded
    for c in clips:
        assert 0 <= c.start <= lengths[c.episode - 7] - 16


def test_select_clips_spreads_extra_clips_without_overlap() -> None:
    lengths = np.array([40, 100, 16])
    clips = select_clips(lengths, np.arange(3), 8, 16, seed=3)
    # Room for 2 + 6 + 1 non-overlapping windows; 8 asked: every episode used, none overlap.
    assert len(clips) == 8 and {c.episode for c in clips} == {0, 1, 2}
    for ep in range(3):
        starts = sorted(c.start for c in clips if c.episode == ep)
        assert all(b - a >= 16 for a, b in zip(starts, starts[1:], strict=False))
        assert all(0 <= s <= lengths[ep] - 16 for s in starts)
    assert len(select_clips(lengths, np.arange(3), 50, 16, seed=3)) == 9  # all there is


def test_coinrun_actions_are_grouped(tmp_path) -> None:
    frames = np.zeros((8, 16, 16, 3), dtype=np.uint8)
    actions = np.array([1, 2, 4, 9, 7, 8, 5, 3], dtype=np.int16)
    with DatasetWriter(tmp_path / "d", fps=15, size=16) as w:
        w.add_episode(frames, actions, source="procgen:coinrun:hard", level_seed=200_000)
    ds = open_dataset(tmp_path / "d")
    labels, names = true_action_labels(ds, [Clip(0, 0)], 8)
    got = [names[i] for i in labels[0]]
    assert got == ["left", "left+jump", "none", "none", "right", "right+jump", "jump"]


def test_a_stride_takes_every_kth_frame_and_labels_only_agreeing_steps(tmp_path) -> None:
    """A world with a frame skip k is evaluated on every k-th frame; a step's true action is
    known only where its k game actions fall in one movement."""
    frames = np.arange(9, dtype=np.uint8)[:, None, None, None] * np.ones((9, 16, 16, 3), np.uint8)
    actions = np.array([1, 1, 7, 8, 4, 9, 5, 5, 3], dtype=np.int16)
    with DatasetWriter(tmp_path / "d", fps=15, size=16) as w:
        w.add_episode(frames, actions, source="procgen:coinrun:hard", level_seed=200_000)
    ds = open_dataset(tmp_path / "d")
    got = load_clips(ds, [Clip(0, 0)], 5, stride=2)  # (1, 5, H, W, 3)
    assert got[0, :, 0, 0, 0].tolist() == [0, 2, 4, 6, 8]
    labels, names = true_action_labels(ds, [Clip(0, 0)], 5, stride=2)
    # (left, left), (right, right+jump), (none, none: ids 4 and 9), (jump, jump)
    assert [names[i] if i >= 0 else None for i in labels[0]] == ["left", None, "none", "jump"]
    assert load_clips(ds, [Clip(0, 0)], 5).shape[1] == 5  # stride 1: consecutive frames


def test_evaluate_errors_are_one_line(tmp_path, square_data) -> None:
    from opengenie.errors import UserError

    short = tmp_path / "short"
    make_synthetic_dataset(short, episodes=2, length=10, size=SIZE, split="test")
    with pytest.raises(UserError, match="no test episodes of >= 16 frames"):
        evaluate(stand_in_world(True), open_dataset(short), _settings(), progress=False)
    with pytest.raises(UserError, match="no val episodes"):
        evaluate(stand_in_world(True), square_data, _settings(split="val"), progress=False)
    world = stand_in_world(True)
    world.config.image_size = 32
    with pytest.raises(UserError, match="16x16 but the world expects 32x32"):
        evaluate(world, square_data, _settings(), progress=False)
    with pytest.raises(UserError, match="--clips"):
        evaluate(stand_in_world(True), square_data, _settings(clips=1), progress=False)


def test_play_steps_constant_matches_play() -> None:
    from opengenie.eval.protocol import PLAY_STEPS

    play = pytest.importorskip("opengenie.play.cli")
    if not hasattr(play, "DEFAULT_STEPS"):
        pytest.skip("play has no DEFAULT_STEPS yet")
    assert play.DEFAULT_STEPS == PLAY_STEPS


def test_random_world_smoke_has_every_section(square_data) -> None:
    sizes = {"dim": 32, "ffn": 64, "heads": 2}
    overrides = [
        f"{part}.{k}={v}" for part in ("tokenizer", "lam", "dynamics") for k, v in sizes.items()
    ]
    overrides += ["tokenizer.enc_depth=1", "tokenizer.dec_depth=1", "lam.enc_depth=1"]
    overrides += ["lam.dec_depth=1", "dynamics.depth=1", "tokenizer.quantizer.codes=64"]
    overrides += ["image_size=16", "tokenizer.patch=4", "lam.patch=8"]
    cfg = preset("tiny", overrides)
    settings = _settings(clips=6, steps=2, button_prompts=2)
    result = evaluate(World(cfg), square_data, settings, progress=False)
    m = result.metrics
    assert len(m["dynamics"]["rollout_psnr"]) == 15
    assert np.isfinite(m["tokenizer"]["psnr"]) and 0 <= m["tokenizer"]["ssim"] <= 1
    assert m["fvd"]["value"] is None and m["fvd"]["reason"]
    assert m["settings"]["clips"] == 6 and m["settings"]["protocol"] is False
    assert len(result.pictures["buttons"]) == 2
    assert result.pictures["buttons"][0].shape == (cfg.num_actions, 9, 16, 16, 3)
