"""Atari (gymnasium + ale-py; the ROMs ship in the ale-py wheel) as a data source.

A uniformly random policy over the game's minimal action set, one episode per seed (seeds play the
role of Procgen's levels: ranges per split, never shared between splits). Sticky actions are off by
default so the stored action is the one the emulator executed. The full 210x160 screen is resized
to size x size (the usual Atari preprocessing; no crop, so the score stays in view).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from opengenie.data.sources import default_workers, generate_episodes, resolve_levels
from opengenie.data.storage import DEFAULT_SHARD_BYTES, DatasetWriter
from opengenie.errors import UserError

ATARI_HZ = 60.0  # the console's frame rate; stored fps = 60 / frameskip


def _gym() -> Any:
    try:
        import ale_py
        import gymnasium
    except ImportError:
        raise UserError(
            "Atari needs gymnasium and ale-py; run `pip install 'opengenie[atari]'`"
        ) from None
    gymnasium.register_envs(ale_py)
    return gymnasium


def atari_games() -> list[str]:
    gym = _gym()
    return sorted(k[4:-3] for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5"))


def check_game(game: str) -> str:
    """The game's gymnasium name (e.g. ``pong`` -> ``Pong``); UserError for unknown names."""
    games = atari_games()
    by_lower = {g.lower(): g for g in games}
    key = game.replace("_", "").replace("-", "").lower()
    if key not in by_lower:
        import difflib

        close = difflib.get_close_matches(game, games, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(
            f"unknown Atari game {game!r}; {hint}see `opengenie data atari --list-games`"
        )
    return by_lower[key]


def atari_source(game: str, frameskip: int, sticky: float) -> str:
    return f"atari:{game}:frameskip{frameskip}:sticky{sticky:g}"


def run_atari_episode(task: tuple[str, int, int, int, int, float, int]) -> dict[str, Any]:
    """One random-policy episode of ``game`` from ``env_seed``; frames uint8 (T, size, size, 3),
    actions int16 (T,) with ``actions[t]`` taken after frame t."""
    game, env_seed, seed, size, max_steps, sticky, frameskip = task
    from PIL import Image

    gym = _gym()
    env = gym.make(
        f"ALE/{game}-v5", frameskip=frameskip, repeat_action_probability=sticky, render_mode=None
    )
    rng = np.random.default_rng([seed, env_seed])
    n_actions = int(env.action_space.n)
    obs, _ = env.reset(seed=env_seed)
    frames: list[np.ndarray] = []
    actions: list[int] = []
    while len(frames) < max_steps:
        img = Image.fromarray(obs).resize((size, size), Image.Resampling.BILINEAR)
        frames.append(np.asarray(img, dtype=np.uint8))  # (size, size, 3)
        a = int(rng.integers(n_actions))
        actions.append(a)
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            break
    env.close()
    return {
        "frames": np.stack(frames),
        "actions": np.asarray(actions, dtype=np.int16),
        "source": atari_source(game, frameskip, sticky),
        "level_seed": env_seed,
    }


def generate_atari(
    out: str | Path,
    game: str,
    episodes: int | None = None,
    seeds: str | None = None,
    split: str = "train",
    size: int = 64,
    max_steps: int = 1000,
    frameskip: int = 4,
    sticky: float = 0.0,
    workers: int | None = None,
    seed: int = 0,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
) -> dict[str, Any]:
    """Generate one episode per seed into ``out``; returns a summary like ``generate_procgen``."""
    game = check_game(game)
    if size < 1 or max_steps < 1 or frameskip < 1:
        raise UserError("--size, --max-steps and --frameskip must be >= 1")
    if not 0.0 <= sticky < 1.0:
        raise UserError(f"--sticky must be in [0, 1), got {sticky}")
    gym = _gym()
    probe = gym.make(f"ALE/{game}-v5")
    action_names = list(probe.unwrapped.get_action_meanings())
    probe.close()
    workers = default_workers() if workers is None or workers <= 0 else workers
    with DatasetWriter(out, fps=ATARI_HZ / frameskip, size=size, shard_bytes=shard_bytes) as w:
        source = atari_source(game, frameskip, sticky)
        lv = resolve_levels(w.existing, source, split, episodes, seeds, what="--seeds")
        w.set_source_info(source, {"action_names": action_names, "num_actions": len(action_names)})
        tasks = [(game, s, seed, size, max_steps, sticky, frameskip) for s in lv]
        generate_episodes(w, run_atari_episode, tasks, split, workers, f"{game} {split}")
        n, f = w.episodes_added, w.frames_added
    return {"game": game, "split": split, "levels": (lv.start, lv.stop), "episodes": n, "frames": f}
