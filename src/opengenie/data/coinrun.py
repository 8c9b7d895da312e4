"""Procgen (CoinRun and the other 15 games) as a data source, following Genie App. F.

Hard mode, a uniformly random policy that draws a fresh action every step (no action repeats /
frame skip: each action is applied for exactly one frame), one episode per level, run until the
game ends it (Procgen's own cap is 1,000 steps), levels in order from a half-open range.

``policy="held"`` departs from App. F on purpose (the paper's random policy is the default):
CoinRun's horizontal speed has momentum, so a key pressed for one frame barely shows in the next
and a random agent jitters at the level start. The held policy keeps each movement for a random
number of frames (1 .. 2*hold-1, mean ``hold``) and favours running right, so that the data
shows the player running both ways, standing and jumping, and travelling through the level.

``policy="expert"`` (CoinRun only) records `opengenie.agent.expert.SearchExpert`, a planner that
reaches the coin on most levels: the expert videos of issue 15's agents. ``mode="easy"`` uses
Procgen's easy levels (the paper's agent experiment reports both).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from opengenie.data.sources import default_workers, generate_episodes, resolve_levels
from opengenie.data.storage import DEFAULT_SHARD_BYTES, DatasetWriter
from opengenie.errors import UserError

PROCGEN_GAMES = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
    "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)  # fmt: skip
PROCGEN_FPS = 15.0  # gym3's interactive viewer runs Procgen at 15 steps/s: one frame per step
PROCGEN_SIZE = 64  # Procgen renders 64x64 observations
NUM_ACTIONS = 15
# Procgen's 15 action ids (env.combos); ids 9-14 are the extra keys D, A, W, S, Q, E.
ACTION_NAMES = (
    "LEFT+DOWN", "LEFT", "LEFT+UP", "DOWN", "NOOP", "UP", "RIGHT+DOWN", "RIGHT", "RIGHT+UP",
    "D", "A", "W", "S", "Q", "E",
)  # fmt: skip

# In CoinRun only horizontal direction and jump (UP) matter: DOWN and the extra keys are no-ops
# (REFERENCE.md §3), so the 15 ids collapse to 6 movements, used to score latent actions (NMI).
COINRUN_GROUP_NAMES = ("left", "left+jump", "none", "jump", "right", "right+jump")
_COINRUN_GROUP_OF_ACTION = np.array(
    [0, 0, 1, 2, 2, 3, 4, 4, 5, 2, 2, 2, 2, 2, 2], dtype=np.int64
)  # index: Procgen action id 0..14
POLICIES = ("random", "held", "expert")
MODES = ("easy", "hard")
DEFAULT_HOLD = 8  # mean frames the held policy keeps a movement
# One Procgen id per CoinRun movement (LEFT, LEFT+UP, NOOP, UP, RIGHT, RIGHT+UP).
MOVEMENT_ACTION = dict(zip(COINRUN_GROUP_NAMES, (1, 2, 4, 5, 7, 8), strict=True))
# The held policy's movements and how often each is drawn: right half the time, to travel.
HELD_ACTIONS = np.array([MOVEMENT_ACTION[name] for name in COINRUN_GROUP_NAMES])
HELD_WEIGHTS = np.array([0.125, 0.125, 0.125, 0.125, 0.25, 0.25])


def coinrun_action_group(action_ids: Any) -> np.ndarray:
    """Map Procgen action ids (any shape, -1 = unknown) to CoinRun's 6 movement groups
    (``COINRUN_GROUP_NAMES``); -1 stays -1. Returns int64 of the same shape."""
    a = np.asarray(action_ids, dtype=np.int64)
    if a.size and (a.min() < -1 or a.max() >= NUM_ACTIONS):
        raise ValueError(f"Procgen action ids lie in 0..{NUM_ACTIONS - 1} (or -1), got {a.min()}")
    out = _COINRUN_GROUP_OF_ACTION[np.clip(a, 0, None)]
    return np.where(a < 0, -1, out)


def procgen_source(game: str, mode: str = "hard") -> str:
    return f"procgen:{game}:{mode}"


def check_game(game: str) -> str:
    g = game.lower()
    if g not in PROCGEN_GAMES:
        raise UserError(f"unknown Procgen game {game!r}; use one of: {', '.join(PROCGEN_GAMES)}")
    return g


def _procgen_env_class() -> Any:
    """Import Procgen quietly: its gym 0.26 dependency prints a deprecation notice on import."""
    with contextlib.redirect_stderr(io.StringIO()):
        from procgen import ProcgenGym3Env
    return ProcgenGym3Env


def procgen_env(game: str, level: int, mode: str = "hard") -> Any:
    """A Procgen env of exactly level `level`, seeded by it, stepping in this thread (the
    parallelism is across processes): what the data, the held-key videos and the agents play."""
    return _procgen_env_class()(
        num=1,
        env_name=game,
        distribution_mode=mode,
        start_level=int(level),
        num_levels=1,
        rand_seed=int(level),
        num_threads=0,
    )


class HeldPolicy:
    """Keeps each drawn action for 1 .. 2*hold-1 frames (module docstring). In CoinRun it draws
    from ``HELD_ACTIONS`` with ``HELD_WEIGHTS``; in other games from all 15 ids uniformly."""

    def __init__(self, rng: np.random.Generator, game: str, hold: int) -> None:
        self.rng, self.hold, self.left, self.action = rng, hold, 0, 4
        coinrun = game == "coinrun"
        self.ids = HELD_ACTIONS if coinrun else np.arange(NUM_ACTIONS)
        self.p = HELD_WEIGHTS if coinrun else None

    def __call__(self) -> int:
        if self.left == 0:
            self.action = int(self.rng.choice(self.ids, p=self.p))
            self.left = int(self.rng.integers(1, 2 * self.hold))
        self.left -= 1
        return self.action


class EpisodeTask(NamedTuple):
    """One episode to record (a tuple, so the worker pool can pickle it)."""

    game: str
    level: int
    seed: int
    max_steps: int | None  # None: until the game ends the episode
    policy: str = "random"
    hold: int = DEFAULT_HOLD  # held policy: mean frames a movement is kept
    mode: str = "hard"
    expert_ties: tuple[str, ...] | None = None  # expert policy: None is its own preference


def run_procgen_episode(task: EpisodeTask | tuple) -> dict[str, Any]:
    """One episode of ``task.game`` on level ``task.level`` with a policy seeded by (seed, level).

    Returns frames uint8 (T, 64, 64, 3) and actions int16 (T,), ``actions[t]`` taken after frame t
    (the last one ends the episode, so its next frame is never observed)."""
    game, level, seed, max_steps, policy, hold, mode, expert_ties = EpisodeTask(*task)
    env = procgen_env(game, level, mode)
    rng = np.random.default_rng([seed, level])
    next_action = _policy(policy, env, rng, game, hold, expert_ties)
    cap = max_steps if max_steps is not None else 1_000_000  # Procgen ends episodes itself
    frames: list[np.ndarray] = []
    actions: list[int] = []
    _, ob, _ = env.observe()
    got_level = env.get_info()[0].get("level_seed")
    if got_level is not None and got_level != level:  # guards against a Procgen API change
        raise RuntimeError(f"Procgen started level {got_level}, asked for {level}")
    while len(frames) < cap:
        frames.append(ob["rgb"][0].copy())  # (64, 64, 3)
        a = next_action()
        actions.append(a)
        env.act(np.array([a], dtype=np.int32))
        _, ob, first = env.observe()
        if first[0]:  # the game ended the episode; `ob` already shows the next episode
            break
    if hasattr(env, "close"):
        env.close()
    return {
        "frames": np.stack(frames),  # (T, 64, 64, 3)
        "actions": np.asarray(actions, dtype=np.int16),  # (T,)
        "source": procgen_source(game, mode),
        "level_seed": level,
    }


def _policy(
    policy: str,
    env: Any,
    rng: np.random.Generator,
    game: str,
    hold: int,
    expert_ties: tuple[str, ...] | None = None,
):
    """The per-frame action function of ``policy`` (called before each frame's step)."""
    if policy == "held":
        return HeldPolicy(rng, game, hold)
    if policy == "expert":
        from opengenie.agent.expert import PREFERENCE, ExpertPolicy

        return ExpertPolicy(env, rng, expert_ties or PREFERENCE)
    return lambda: int(rng.integers(NUM_ACTIONS))


def _check_expert_ties(policy: str, ties: tuple[str, ...]) -> None:
    if policy != "expert":
        raise UserError("--expert-ties orders the expert's choices; it needs --policy expert")
    from opengenie.agent.expert import check_preference

    try:
        check_preference(ties)
    except ValueError as error:
        raise UserError(f"--expert-ties: {error}") from None


def _recording(task: EpisodeTask, split: str, levels: range, episodes: int) -> dict[str, Any]:
    """How one `opengenie data coinrun` call recorded its episodes, for the dataset's metadata."""
    out: dict[str, Any] = {
        "split": split,
        "levels": [levels.start, levels.stop],
        "episodes": episodes,
        "policy": task.policy,
        "mode": task.mode,
        "seed": task.seed,
        "max_steps": task.max_steps,
    }
    if task.policy == "held":
        out["hold"] = task.hold
    if task.policy == "expert":
        from opengenie.agent.expert import PREFERENCE

        out["expert_ties"] = list(task.expert_ties or PREFERENCE)
    return out


def generate_procgen(
    out: str | Path,
    episodes: int | None = None,
    levels: str | None = None,
    split: str = "train",
    game: str = "coinrun",
    workers: int | None = None,
    max_steps: int | None = None,
    seed: int = 0,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    policy: str = "random",
    hold: int = DEFAULT_HOLD,
    mode: str = "hard",
    expert_ties: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Generate one episode per level into the dataset at ``out`` (created or appended to).
    ``expert_ties`` (expert policy only): the order in which it prefers movements that tie.

    Returns a summary: split, levels (first, end), episodes, frames."""
    game = check_game(game)
    if policy not in POLICIES:
        raise UserError(f"unknown --policy {policy!r}; use one of: {', '.join(POLICIES)}")
    if policy == "expert" and game != "coinrun":
        raise UserError(f"--policy expert plays CoinRun only, not {game}")
    if mode not in MODES:
        raise UserError(f"unknown --mode {mode!r}; use one of: {', '.join(MODES)}")
    if expert_ties is not None:
        _check_expert_ties(policy, expert_ties)
    if hold < 1:
        raise UserError(f"--hold must be >= 1, got {hold}")
    if max_steps is not None and max_steps < 1:
        raise UserError(f"--max-steps must be >= 1, got {max_steps}")
    try:
        _procgen_env_class()
    except ImportError:
        raise UserError(
            "Procgen is not installed; run `pip install 'opengenie[coinrun]'` (procgen-mirror)"
        ) from None
    workers = default_workers() if workers is None or workers <= 0 else workers
    with DatasetWriter(out, fps=PROCGEN_FPS, size=PROCGEN_SIZE, shard_bytes=shard_bytes) as w:
        source = procgen_source(game, mode)
        lv = resolve_levels(w.existing, source, split, episodes, levels)
        w.set_source_info(source, {"action_names": list(ACTION_NAMES), "num_actions": NUM_ACTIONS})
        tasks = [
            EpisodeTask(game, level, seed, max_steps, policy, hold, mode, expert_ties)
            for level in lv
        ]
        generate_episodes(w, run_procgen_episode, tasks, split, workers, f"{game} {split}")
        if w.episodes_added:  # (an interrupted call's rerun records the levels it adds)
            w.add_recording(source, _recording(tasks[0], split, lv, w.episodes_added))
        n, f = w.episodes_added, w.frames_added
    return {"split": split, "levels": (lv.start, lv.stop), "episodes": n, "frames": f}
