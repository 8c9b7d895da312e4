"""A World as a Gymnasium environment, so that agents can act inside an imagined world.

    import gymnasium as gym
    import opengenie.env  # registers "opengenie/World-v0"

    env = gym.make("opengenie/World-v0")                       # the shipped CoinRun world
    frame, info = env.reset(seed=0, options={"prompt": "level.png"})
    frame, reward, terminated, truncated, info = env.step(3)   # a latent action id

Observations are the world's frames, (H, W, 3) uint8; actions are its latent action ids
(``Discrete(num_actions)``). A world knows no reward and no end of an episode: every step
gives reward 0.0 and ``terminated`` False (wrap the env in ``gymnasium.wrappers.TimeLimit``,
or pass ``max_episode_steps`` to ``gym.make``, for episodes of a fixed length). ``info`` holds
the frame number and, where the world has an action map, the movement each action stands for.
Needs ``pip install 'opengenie[env]'`` (Gymnasium).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from opengenie.errors import UserError
from opengenie.models.world import World, world_prompt

ENV_ID = "opengenie/World-v0"


class WorldEnv(gym.Env):
    """One player's session in a World: ``reset`` starts from a prompt, ``step`` takes a
    latent action. Seeded resets reproduce their frames exactly for the same actions."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        world: World | str | os.PathLike | None = None,
        prompt: Any = None,
        steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        """world: a loaded World, a World directory, or None for the shipped CoinRun world.
        prompt: the default start (an image path or (H, W, 3) uint8); default the world's
        prompt.png. steps: MaskGIT steps per frame (default: play's)."""
        from opengenie.config import PLAY_STEPS

        if render_mode not in (None, "rgb_array"):
            raise UserError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        directory = None if isinstance(world, World) else world
        self.world = world if isinstance(world, World) else World.load(directory)
        size = self.world.config.image_size
        self.default_prompt = prompt if prompt is not None else world_prompt(directory)
        if self.default_prompt is None:  # a world without prompt.png: a mid-grey frame
            self.default_prompt = np.full((size, size, 3), 128, np.uint8)
        self.session = self.world.new_session()
        self.session.sampling.steps = PLAY_STEPS if steps is None else int(steps)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = spaces.Discrete(self.world.num_actions)
        names = (self.world.action_map or {}).get("names", {})
        self._names = {int(k): v for k, v in names.items() if str(k).isdigit()}
        self._frame: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """options: {"prompt": image path or (H, W, 3) uint8} to start elsewhere."""
        super().reset(seed=seed)
        prompt = (options or {}).get("prompt", self.default_prompt)
        # The sampler's own seed: the given one, else one drawn from the env's np_random, so
        # that seeded resets (and Gymnasium's determinism check) reproduce frames exactly.
        sampler_seed = seed if seed is not None else int(self.np_random.integers(2**62))
        self._frame = self.session.reset(prompt, seed=sampler_seed)
        return self._frame, {"frame": 0}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._frame is None:
            raise UserError("call reset() before step()")
        if not self.action_space.contains(action):
            raise UserError(f"unknown action {action!r}: use an id in 0..{self.action_space.n - 1}")
        self._frame = self.session.step(int(action))
        info = {"frame": self.session.frames - 1, "action_name": self._names.get(int(action))}
        return self._frame, 0.0, False, False, info

    def render(self) -> np.ndarray | None:
        return self._frame if self.render_mode == "rgb_array" else None


def register() -> None:
    """Register ``opengenie/World-v0`` with Gymnasium (done on import; safe to repeat)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="opengenie.env:WorldEnv")


register()
