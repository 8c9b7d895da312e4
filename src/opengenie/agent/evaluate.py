"""Play CoinRun with an agent and its baselines on the same levels and seeds; share solved.

Players: "agent" (the policy over latent actions + the latent -> real mapping), "oracle" (the
same network cloned on the real actions), "expert" (the planner whose videos were cloned),
"right+up" (always RIGHT+UP) and "random" (a uniform action among Procgen's 15 every frame):
the last two as measured in REFERENCE.md §4. The cloned players hold each action for one world
step (`frame_skip` frames) and see the last `context` world-step frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from opengenie.agent.agent import Agent
from opengenie.agent.expert import PERIOD, SearchExpert
from opengenie.agent.game import coinrun_env, hold, observe
from opengenie.agent.policy import context_indices
from opengenie.data.coinrun import MOVEMENT_ACTION, NUM_ACTIONS

PLAYERS = ("agent", "oracle", "expert", "right+up", "random")
DETERMINISTIC = ("expert", "right+up")  # the same game for every seed: played once
# A player: (contexts uint8 (B, K, H, W, 3)) -> Procgen action ids (B,)
Chooser = Callable[[torch.Tensor], np.ndarray]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial share (sound at 0 and at n successes too)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(solved: np.ndarray, baseline: np.ndarray, draws: int = 4000) -> dict:
    """A player's share minus a baseline's on the same levels: solved (seeds, L) and baseline
    (seeds_b, L) bool -> the mean per-level difference and its 95% bootstrap interval. Levels
    are resampled (seeds averaged within a level): paired, so that levels every player solves
    or fails do not widen the interval as they do for two separate Wilson intervals."""
    diff = solved.mean(0) - baseline.mean(0)  # (L,)
    rng = np.random.default_rng(0)
    means = diff[rng.integers(0, len(diff), (draws, len(diff)))].mean(1)  # (draws,)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"difference": float(diff.mean()), "ci95": [float(low), float(high)]}


def play_levels(
    choose: Chooser,
    levels: list[int],
    mode: str,
    period: int,
    context: int,
    record: bool = False,
    bar: tqdm | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Play one episode on each level with all levels in one batch (one network call a step).

    Returns solved (L,) bool and, with `record`, the game frames of the first level's episode."""
    envs = [coinrun_env(level, mode) for level in levels]
    history = [[observe(env)] for env in envs]  # world-step frames per level
    movie = [history[0][0]] if record else []
    solved = np.zeros(len(levels), dtype=bool)
    alive = list(range(len(levels)))
    while alive:
        ctx = [
            [history[i][j] for j in context_indices(len(history[i]) - 1, context)] for i in alive
        ]
        actions = choose(torch.from_numpy(np.stack([np.stack(c) for c in ctx])))  # (B,)
        still = []
        for i, action in zip(alive, actions, strict=True):
            seen, ended, won = hold(envs[i], int(action), period)
            if record and i == 0:
                movie.extend(seen)
            if ended:
                solved[i] = won
                if bar is not None:
                    bar.update(1)
            else:
                history[i].append(seen[-1])
                still.append(i)
        alive = still
    for env in envs:
        env.close()
    return solved, movie


def play_expert(levels: list[int], mode: str, seed: int, bar: tqdm | None = None) -> np.ndarray:
    """The planner on each level (it needs the env's save states, so one level at a time)."""
    solved = np.zeros(len(levels), dtype=bool)
    for k, level in enumerate(levels):
        env = coinrun_env(level, mode)
        expert = SearchExpert(env, np.random.default_rng([seed, level]))
        while True:
            _, ended, won = hold(env, expert.choose(), PERIOD)
            if ended:
                solved[k] = won
                break
        env.close()
        if bar is not None:
            bar.update(1)
    return solved


def choosers(agent: Agent, seed: int) -> dict[str, tuple[Chooser, int, int]]:
    """Each frame-based player: (chooser, frames per action, frames it sees)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    k, ctx = agent.frame_skip, agent.policy.context
    out: dict[str, tuple[Chooser, int, int]] = {
        "agent": (lambda f: agent.act(f, gen, rng), k, ctx),
        "right+up": (lambda f: np.full(len(f), MOVEMENT_ACTION["right+jump"]), 1, 1),
        "random": (lambda f: rng.integers(NUM_ACTIONS, size=len(f)), 1, 1),
    }
    if agent.oracle is not None:
        out["oracle"] = (lambda f: agent.oracle_act(f, gen), k, agent.oracle.context)
    return out


def evaluate_agent(
    agent: Agent,
    levels: list[int],
    mode: str = "easy",
    players: tuple[str, ...] = PLAYERS,
    seeds: int = 1,
    progress: bool = True,
) -> tuple[dict, list[np.ndarray]]:
    """Every player on every level, `seeds` times for the sampling players (the game itself is
    the same for a level and seed); with "right+up" among them, each other player's difference
    to it, paired per level. Returns (results, the agent's first episode's frames)."""
    results: dict[str, dict] = {}
    solved_by: dict[str, np.ndarray] = {}  # (seeds, levels) per player
    movie: list[np.ndarray] = []
    runs = {p: 1 if p in DETERMINISTIC else seeds for p in players}
    total = len(levels) * sum(runs.values())
    bar = tqdm(total=total, desc=f"coinrun {mode}", unit="ep", disable=not progress)
    with torch.no_grad():
        for name in players:
            per_seed = []
            for s in range(runs[name]):
                if name == "expert":
                    solved = play_expert(levels, mode, s, bar)
                else:
                    chooser = choosers(agent, s).get(name)
                    if chooser is None:
                        continue  # an agent saved without its oracle
                    choose, period, context = chooser
                    record = name == "agent" and s == 0
                    solved, frames = play_levels(
                        choose, levels, mode, period, context, record=record, bar=bar
                    )
                    movie = frames or movie
                per_seed.append(solved)
            if per_seed:
                solved_by[name] = np.stack(per_seed)
                results[name] = _summary(solved_by[name])
    bar.close()
    if "right+up" in solved_by:  # the baseline to beat (issue 15), paired per level
        for name, solved in solved_by.items():
            if name != "right+up":
                results[name]["vs_right_up"] = paired_difference(solved, solved_by["right+up"])
    return results, movie


def _summary(solved: np.ndarray) -> dict:
    """solved (seeds, levels) bool -> share, its 95% interval and the per-seed shares."""
    wins, n = int(solved.sum()), int(solved.size)
    low, high = wilson_interval(wins, n)
    return {
        "success": wins / n,
        "ci95": [low, high],
        "episodes": n,
        "per_seed": solved.mean(1).round(4).tolist(),
        "solved": solved.astype(int).tolist(),  # (seeds, levels): compare players per level
    }
