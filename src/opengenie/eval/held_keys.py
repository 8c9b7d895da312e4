"""The game's own videos of held keys: CoinRun replayed from a level seed, each movement held.

From each level, two start states (DESIGN.md "Control (held keys)"):

- ``"first"``: the level's first frame;
- ``"mid"``: a mid-level state, reached by running right (→ with jumps, so that walls are
  climbed) for ``MID_RUN`` frames, then standing still for ``MID_STILL`` frames so that the
  player is at rest and ← can move it.

From each start the game's state is saved once and restored before each of CoinRun's six
movements is held for ``frames`` frames, so all six share the exact start. A case whose episode
ends while the key is held (the player died or reached the coin) is marked invalid: the frames
after that belong to the next episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from opengenie.data.coinrun import COINRUN_GROUP_NAMES, MOVEMENT_ACTION, procgen_env

HELD_FRAMES = 16
MID_RUN = 24  # frames of RIGHT+UP, then
MID_STILL = 12  # frames of no key: about 3 px of momentum left after 24 frames of running
START_KINDS = ("first", "mid")
MOVEMENTS = COINRUN_GROUP_NAMES  # ("left", "left+jump", "none", "jump", "right", "right+jump")
_RUN_RIGHT, _STILL = MOVEMENT_ACTION["right+jump"], MOVEMENT_ACTION["none"]


@dataclass
class HeldKeyVideos:
    """Game videos of held movements: ``videos[l, s, m]`` starts at ``starts[l, s]`` and holds
    movement ``MOVEMENTS[m]``; frame 0 is the start frame."""

    levels: np.ndarray  # (L,) level seeds
    videos: np.ndarray  # uint8 (L, S, M, 1 + frames, H, W, 3)
    valid: np.ndarray  # bool (L, S, M): the episode did not end while the key was held
    start_kinds: tuple[str, ...] = START_KINDS

    @property
    def starts(self) -> np.ndarray:
        return self.videos[:, :, 0, 0]  # (L, S, H, W, 3)

    def every(self, stride: int) -> HeldKeyVideos:
        """Every ``stride``-th frame (frame 0 kept): what a world stepping ``stride`` game
        frames at a time is compared with."""
        if stride < 1 or (self.videos.shape[3] - 1) % stride:
            raise ValueError(f"stride {stride} does not divide {self.videos.shape[3] - 1} frames")
        return HeldKeyVideos(
            self.levels, self.videos[:, :, :, ::stride], self.valid, self.start_kinds
        )


def _env(level: int):
    return procgen_env("coinrun", level, "hard")


def _act(env, action: int) -> tuple[np.ndarray, bool]:
    """One game frame with ``action``: (the next frame (H, W, 3), whether the episode ended)."""
    env.act(np.array([action], dtype=np.int32))
    _, ob, first = env.observe()
    return ob["rgb"][0].copy(), bool(first[0])


def hold_movement(env, movement: str, frames: int) -> tuple[np.ndarray, bool]:
    """From the env's current state, ``movement`` held for ``frames`` game frames: uint8
    (1 + frames, H, W, 3), the current frame first, and whether the episode lasted."""
    _, ob, _ = env.observe()
    clip, ok = [ob["rgb"][0].copy()], True
    for _ in range(frames):
        frame, ended = _act(env, MOVEMENT_ACTION[movement])
        ok &= not ended
        clip.append(frame if ok else clip[-1])  # frozen after the episode ended
    return np.stack(clip), ok


def _hold_all(env, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """From the env's current state, each movement held for ``frames`` frames (the state is
    restored before each): uint8 (M, 1 + frames, H, W, 3) and valid (M,)."""
    state = env.callmethod("get_state")
    videos, valid = [], []
    for name in MOVEMENTS:
        env.callmethod("set_state", state)
        clip, ok = hold_movement(env, name, frames)
        videos.append(clip)
        valid.append(ok)
    env.callmethod("set_state", state)
    return np.stack(videos), np.array(valid)


def _reach_mid(env) -> bool:
    """Run right, then stand still (module docstring); False if the episode ended on the way."""
    for i in range(MID_RUN + MID_STILL):
        _, ended = _act(env, _RUN_RIGHT if i < MID_RUN else _STILL)
        if ended:
            return False
    return True


def record_held_keys(
    levels: list[int] | np.ndarray, frames: int = HELD_FRAMES, progress: bool = True
) -> HeldKeyVideos:
    """Replay CoinRun (hard) from each level seed and hold each movement from both starts.

    A level whose run to the mid-level start ends the episode gets its mid cases marked invalid.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    out, ok = [], []
    for level in tqdm(list(levels), desc="game: held keys", unit="level", disable=not progress):
        env = _env(int(level))
        first, first_ok = _hold_all(env, frames)
        if _reach_mid(env):
            mid, mid_ok = _hold_all(env, frames)
        else:
            mid, mid_ok = first.copy(), np.zeros(len(MOVEMENTS), dtype=bool)
        out.append(np.stack([first, mid]))
        ok.append(np.stack([first_ok, mid_ok]))
        if hasattr(env, "close"):
            env.close()
    return HeldKeyVideos(np.asarray(list(levels), dtype=np.int64), np.stack(out), np.stack(ok))
