"""opengenie.env: a World as a Gymnasium environment, checked by Gymnasium's own checker."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium", reason="needs gymnasium (pip install 'opengenie[env]')")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from opengenie.env import ENV_ID, WorldEnv  # noqa: E402
from opengenie.errors import UserError  # noqa: E402
from opengenie.models import World  # noqa: E402

from .conftest import count_step_logits  # noqa: E402


@pytest.fixture
def world(small_config):
    world = World(small_config)
    world.action_map = {"names": {"0": "right", "1": "left"}, "keys": {"right": 0, "left": 1}}
    return world


def test_gymnasium_env_checker_passes(world, tmp_path):
    """Gymnasium's own checker, on the env as gym.make builds it; its warnings are failures."""
    world.save(tmp_path / "w")
    env = gym.make(ENV_ID, world=str(tmp_path / "w"), steps=1, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=False)


def test_registered_and_made_by_id(world, tmp_path):
    world.save(tmp_path / "w")
    env = gym.make(ENV_ID, world=str(tmp_path / "w"), steps=1, max_episode_steps=3)
    frame, info = env.reset(seed=0)
    size = world.config.image_size
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8 and info["frame"] == 0
    for t in range(3):
        frame, reward, terminated, truncated, info = env.step(0)
        assert reward == 0.0 and not terminated and info["frame"] == t + 1
        assert info["action_name"] == "right"
    assert truncated  # the TimeLimit of max_episode_steps, not the world, ends it


def test_seeded_resets_reproduce_and_actions_and_prompts_take_effect(world):
    env = WorldEnv(world, steps=1)

    def play(actions, seed, prompt=None):
        options = None if prompt is None else {"prompt": prompt}
        frames = [env.reset(seed=seed, options=options)[0]]
        return frames + [env.step(a)[0] for a in actions]

    a = play([0, 1, 2], seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, play([0, 1, 2], seed=4), strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, play([3, 3, 3], seed=4), strict=True))
    red = np.zeros((40, 30, 3), np.uint8)
    red[..., 0] = 255
    assert not np.array_equal(play([], seed=4, prompt=red)[0], a[0])


def test_steps_option_sets_the_maskgit_passes(world):
    calls = count_step_logits(world)
    for steps in (1, 3):
        env = WorldEnv(world, steps=steps)
        env.reset(seed=0)
        calls["n"] = 0
        env.step(0)
        assert calls["n"] == steps + 1  # K MaskGIT passes and the commit


def test_bad_use_is_a_user_error(world):
    env = WorldEnv(world)
    with pytest.raises(UserError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(UserError, match="unknown action"):
        env.step(world.num_actions)
    with pytest.raises(UserError, match="render_mode"):
        WorldEnv(world, render_mode="human")
