"""Control with held keys: the game's videos, the pairing, the statistics and the bars."""

from __future__ import annotations

import numpy as np
import pytest

from opengenie.eval import control
from opengenie.eval.control import (
    ControlSettings,
    case_stats,
    control_section,
    held_key_pairing,
    lam_section,
    movement_code,
)
from opengenie.eval.held_keys import MOVEMENTS, HeldKeyVideos
from opengenie.eval.metrics import PSNR_CAP

pytest.importorskip("procgen", reason="needs procgen-mirror (pip install 'opengenie[coinrun]')")


@pytest.fixture(scope="module")
def held() -> HeldKeyVideos:
    from opengenie.eval.held_keys import record_held_keys

    return record_held_keys([200000, 200001, 200002], frames=16, progress=False)


def test_held_keys_share_their_start_and_follow_the_game(held) -> None:
    from opengenie.eval.scroll import estimate_scroll

    n_levels, s, m, f = held.videos.shape[:4]
    assert (n_levels, s, m, f) == (3, 2, 6, 17)
    for kind in range(2):  # all six movements start from the same frame
        starts = held.videos[:, kind, :, 0]
        assert (starts == starts[:, :1]).all()
    assert not (held.starts[:, 0] == held.starts[:, 1]).all()  # mid-level is elsewhere
    v = held.videos
    start = np.broadcast_to(v[:, :, :, :1], v.shape)
    dx, dy = estimate_scroll(start[..., 16, :, :, :], v[..., 16, :, :, :])  # (L, S, M)
    right, left, none = MOVEMENTS.index("right"), MOVEMENTS.index("left"), MOVEMENTS.index("none")
    ok = held.valid
    assert (dx[:, 0, right][ok[:, 0, right]] >= 4).all()  # → runs right from level starts
    assert (dx[:, 1, left][ok[:, 1, left]] <= -4).all()  # ← runs back from mid-level
    assert np.abs(dx[:, :, none][ok[:, :, none]]).max() < 1  # standing still stays put
    jump = MOVEMENTS.index("jump")
    _, dy8 = estimate_scroll(v[:, :, jump, 0], v[:, :, jump, 8])
    assert (dy8 > 4).all()  # mid-jump, the camera is up


def test_movement_code_falls_back_like_play() -> None:
    keys = {"left": 1, "right": 2, "jump": 3}
    assert movement_code(keys, "right") == 2
    assert movement_code(keys, "right+jump") == 2  # the horizontal part first, as play.js
    assert movement_code({"jump": 3}, "left+jump") == 3
    assert movement_code(keys, "none") is None


def test_pairing_follows_the_held_table() -> None:
    table = np.zeros((8, 6), dtype=np.int64)
    for m in range(6):
        table[7 - m, m] = 50  # movement m mostly gets code 7 - m
        table[0, m] += 3
    keys = held_key_pairing(table)
    assert keys == {name: 7 - m for m, name in enumerate(MOVEMENTS)}
    lam = lam_section(table)
    assert lam["per_movement"]["left"]["dominant_code"] == 7
    assert lam["per_movement"]["left"]["share"] == pytest.approx(50 / 53)
    assert lam["nmi"] > 0.8
    one = np.zeros((8, 6), dtype=np.int64)
    one[2] = 10  # every movement gets code 2: no information
    assert lam_section(one)["nmi"] == pytest.approx(0.0, abs=1e-9)


def test_case_stats_perfect_and_frozen_worlds(held) -> None:
    right = MOVEMENTS.index("right")
    game = held.videos[:, 0, right]  # (L, 17, H, W, 3) from level starts
    perfect = case_stats(game, game.copy())["world"]
    assert perfect["same_way_x"] == 1.0 and perfect["moving_x_cases"] == len(game)
    assert perfect["abs_error_dx"][1] == pytest.approx(0, abs=1e-6)
    frozen = case_stats(game, np.broadcast_to(game[:, :1], game.shape).copy())
    assert frozen["world"]["same_way_x"] == 0.0
    assert frozen["world"]["psnr"][1] == pytest.approx(frozen["copy_psnr"][1])
    assert frozen["game_dx"][1] > 4 and abs(frozen["world"]["dx"][1]) < 1


def test_the_tokenizer_ceiling_scores_what_a_perfect_dynamics_model_would(held) -> None:
    """roundtrip_held reconstructs every valid video and leaves ended episodes blank; scored
    as a world, a lossless tokenizer matches the game and one that keeps only the start frame
    scores copying it."""
    from opengenie.eval.ceiling import roundtrip_held

    lossless = roundtrip_held(held, lambda v: v.copy(), batch=5)
    assert lossless.shape == held.videos.shape and lossless.dtype == np.uint8
    assert (lossless[held.valid] == held.videos[held.valid]).all()
    assert (lossless[~held.valid] == 0).all()
    first = roundtrip_held(held, lambda v: np.broadcast_to(v[:, :1], v.shape).copy())
    right = MOVEMENTS.index("right")
    ok = held.valid[:, 0, right]  # from level starts
    game = held.videos[ok, 0, right]
    perfect = case_stats(game, lossless[ok, 0, right])
    assert perfect["world"]["psnr"] == [PSNR_CAP, PSNR_CAP]
    assert perfect["world"]["same_way_x"] == 1.0
    frozen = case_stats(game, first[ok, 0, right])
    assert frozen["world"]["psnr"] == pytest.approx(frozen["copy_psnr"], abs=1e-4)
    assert frozen["world"]["same_way_x"] == 0.0  # the game ran right


def _fake_world(overrides: list[str]):
    from opengenie.config import preset
    from opengenie.models import World

    return World(preset("tiny", overrides))


def test_control_section_reads_bars_off_a_perfect_and_a_frozen_world(held, monkeypatch) -> None:
    """The measurement, not a model: a world that replays the game meets every movement bar,
    one that never moves fails the → and ← bars."""
    from .conftest import SMALL_MODEL

    world = _fake_world([s for s in SMALL_MODEL if not s.startswith("image_size")])
    m_codes = np.arange(len(MOVEMENTS))  # each movement its own code, as a good LAM would

    def codes(lam, h, device, batch=64):
        out = np.zeros((*h.videos.shape[:3], h.videos.shape[3] - 1), dtype=np.int64)
        out[:] = m_codes[None, None, :, None]
        return out

    cases = {}

    def replay(world, starts, sent, frames, s, precision, progress=True):
        return np.stack([cases[(k.tobytes(), int(c))] for k, c in zip(starts, sent, strict=True)])

    for lv in range(len(held.levels)):
        for st in range(2):
            for m in range(len(MOVEMENTS)):
                cases[(held.videos[lv, st, m, 0].tobytes(), m)] = held.videos[lv, st, m]
    monkeypatch.setattr(control, "lam_codes", codes)
    monkeypatch.setattr(control, "world_held_rollouts", replay)
    monkeypatch.setattr(control, "roundtrip", lambda world, v, precision: v // 2)  # darker
    metrics, pictures = control_section(world, held, ControlSettings(), None, progress=False)
    assert metrics["keys"] == {name: m for m, name in enumerate(MOVEMENTS)}
    b = metrics["bars"]
    # A tokenizer that halves the pixels caps what even a replaying dynamics model scores.
    assert b["still_psnr16_ceiling"] < 15 < b["still_psnr16"]
    assert b["jump_psnr16_ceiling"] < 15 < b["jump_psnr16"]
    none_first = metrics["movements"]["none"]["first"]
    assert len(none_first["tokenizer_psnr"]) == 2 and none_first["tokenizer_psnr"][1] < 15
    assert b["right_first_same_way"] == 1.0 and b["left_mid_same_way"] == 1.0
    assert b["jump_dy8_same_sign"] == 1.0
    assert b["lam_left_right_still_distinct"] and b["lam_left_right_still_min_share"] == 1.0
    assert b["still_psnr16"] >= 27 and b["jump_psnr16"] >= 24
    assert {"right/first", "left/mid"} <= set(pictures)

    def frozen(world, starts, sent, frames, s, precision, progress=True):
        return np.repeat(starts[:, None], frames + 1, axis=1)

    monkeypatch.setattr(control, "world_held_rollouts", frozen)
    b = control_section(world, held, ControlSettings(), None, progress=False)[0]["bars"]
    assert b["right_first_same_way"] == 0.0 and b["left_mid_same_way"] == 0.0
    assert b["right_first_psnr16_gain"] == pytest.approx(0, abs=1e-6)
    # The ceiling scores the tokenizer's frames as a world, whatever the dynamics did: a
    # lossless tokenizer shows the game's scroll, one that keeps only the start frame none.
    monkeypatch.setattr(control, "roundtrip", lambda world, v, precision: v.copy())
    b = control_section(world, held, ControlSettings(), None, progress=False)[0]["bars"]
    assert b["right_first_same_way_ceiling"] == 1.0 and b["left_mid_same_way_ceiling"] == 1.0
    assert b["still_psnr16_ceiling"] == pytest.approx(PSNR_CAP)

    def keeps_the_start(world, v, precision):
        return np.broadcast_to(v[:, :1], v.shape).copy()

    monkeypatch.setattr(control, "roundtrip", keeps_the_start)
    b = control_section(world, held, ControlSettings(), None, progress=False)[0]["bars"]
    assert b["right_first_same_way_ceiling"] == 0.0 and b["left_mid_same_way_ceiling"] == 0.0


def test_a_frame_skip_world_is_held_for_the_same_game_frames(held, monkeypatch) -> None:
    """With frame_skip 2 the world takes 8 steps for the game's 16 frames, is compared with
    every 2nd game frame, and a world that replays those frames meets the movement bars."""
    from .conftest import SMALL_MODEL

    world = _fake_world(
        [s for s in SMALL_MODEL if not s.startswith("image_size")] + ["frame_skip=2"]
    )
    asked = []

    def codes(lam, h, device, batch=64):
        asked.append(h.videos.shape[3])
        out = np.zeros((*h.videos.shape[:3], h.videos.shape[3] - 1), dtype=np.int64)
        out[:] = np.arange(len(MOVEMENTS))[None, None, :, None]
        return out

    strided = {
        (held.videos[lv, st, m, 0].tobytes(), m): held.videos[lv, st, m, ::2]
        for lv in range(len(held.levels))
        for st in range(2)
        for m in range(len(MOVEMENTS))
    }

    def replay(world, starts, sent, frames, s, precision, progress=True):
        asked.append(frames)
        return np.stack([strided[(k.tobytes(), int(c))] for k, c in zip(starts, sent, strict=True)])

    monkeypatch.setattr(control, "lam_codes", codes)
    monkeypatch.setattr(control, "world_held_rollouts", replay)
    metrics = control_section(world, held, ControlSettings(), None, progress=False)[0]
    assert asked == [9, 8]  # the LAM sees 1 + 8 frames, the world takes 8 steps
    assert metrics["frames"] == 16 and metrics["frame_skip"] == 2
    assert metrics["movements"]["right"]["first"]["frames"] == [8, 16]
    b = metrics["bars"]
    assert b["right_first_same_way"] == 1.0 and b["left_mid_same_way"] == 1.0
    assert b["still_psnr16"] >= 27
    with pytest.raises(ValueError, match="does not divide"):
        held.every(3)


def test_world_rollouts_hold_the_code_and_honour_steps(held) -> None:
    """A real (untrained) World through the same path eval takes: shapes, and steps matter."""
    from contextlib import nullcontext

    from .conftest import SMALL_MODEL

    world = _fake_world([s for s in SMALL_MODEL if not s.startswith("image_size")])
    starts = held.starts[:2, 0]
    codes = np.array([0, 3])
    one = control.world_held_rollouts(
        world, starts, codes, 4, ControlSettings(steps=1), nullcontext(), False
    )
    assert one.shape == (2, 5, 64, 64, 3) and one.dtype == np.uint8
    again = control.world_held_rollouts(
        world, starts, codes, 4, ControlSettings(steps=1), nullcontext(), False
    )
    np.testing.assert_array_equal(one, again)  # seeded
    more = control.world_held_rollouts(
        world, starts, codes, 4, ControlSettings(steps=4), nullcontext(), False
    )
    assert not np.array_equal(one[:, 1:], more[:, 1:])
    # Action guidance against the still action (here code 3): other frames for code 0, the
    # same for the still code itself, which is its own reference.
    world.action_map = {"names": {"3": "none"}, "keys": {"none": 3}}
    guided = control.world_held_rollouts(
        world, starts, codes, 4, ControlSettings(steps=1, guidance=2.0), nullcontext(), False
    )
    assert not np.array_equal(one[0, 1:], guided[0, 1:])
    np.testing.assert_array_equal(one[1], guided[1])
