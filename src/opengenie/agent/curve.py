"""The label curve (issue 15): the latent-action agent's success against the number of labelled
transitions that map its latent actions to real ones, over several seeds, beside the oracle and
the fixed baselines. The cloned policy does not depend on the labels, so one policy per seed is
trained and only the mapping is refitted for each count.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from opengenie.agent.evaluate import choosers, play_levels, wilson_interval
from opengenie.agent.train import fit_mapping, train_agent
from opengenie.eval.report import svg_plot

LABEL_COUNTS: tuple[int | None, ...] = (25, 50, 100, 200, 500, None)  # None: all transitions


def label_curve(
    world: str | None,
    data: str,
    levels: list[int],
    mode: str = "easy",
    seeds: int = 3,
    counts: tuple[int | None, ...] = LABEL_COUNTS,
    train_steps: int = 2000,
    save: tuple[int | None, str] | None = None,
) -> dict:
    """Success per (seed, label count), the oracle's per seed, and RIGHT+UP / random.
    `save` = (count, directory): each seed's agent with that count's mapping is saved as
    directory/agent-seed<S>."""
    rows: dict[str, list[float]] = {_name(n): [] for n in counts}
    oracle: list[float] = []
    fixed: dict[str, float] = {}
    for seed in range(seeds):
        agent, steps, codes = train_agent(world, data, None, seed, "dictionary", train_steps)
        players = choosers(agent, seed)
        with torch.no_grad():
            for n in tqdm(counts, desc=f"seed {seed}: label counts", unit="count"):
                agent.mapping = fit_mapping(steps, codes, n, seed, agent.policy.classes)
                rows[_name(n)].append(_success(players["agent"], levels, mode))
                if save is not None and save[0] == n:
                    agent.info["labels"] = n if n is not None else "all"
                    agent.save(f"{save[1]}/agent-seed{seed}")
            oracle.append(_success(players["oracle"], levels, mode))
            if seed == 0:
                for name in ("right+up", "random"):
                    fixed[name] = _success(players[name], levels, mode)
    n_lv = len(levels)
    return {
        "mode": mode,
        "levels": [levels[0], levels[-1] + 1],
        "seeds": seeds,
        "train_steps": train_steps,
        "agent": {k: _pooled(v, n_lv) for k, v in rows.items()},
        "oracle": _pooled(oracle, n_lv),
        **{k: _pooled([v], n_lv) for k, v in fixed.items()},
    }


def _name(n: int | None) -> str:
    return "all" if n is None else str(n)


def _success(player, levels: list[int], mode: str) -> float:
    choose, period, context = player
    solved, _ = play_levels(choose, levels, mode, period, context)
    return float(solved.mean())


def _pooled(per_seed: list[float], levels: int) -> dict:
    """Mean over seeds with a 95% Wilson interval over all the episodes played."""
    wins = round(sum(per_seed) * levels)
    low, high = wilson_interval(wins, levels * len(per_seed))
    return {"success": float(np.mean(per_seed)), "ci95": [low, high], "per_seed": per_seed}


def curve_svg(curve: dict) -> str:
    """Success (%) against log2(labels); 'all' drawn one step right of the largest count."""
    names = list(curve["agent"])
    counts = [int(n) for n in names if n != "all"]
    xs = [math.log2(c) for c in counts]
    if "all" in names:
        xs.append((xs[-1] + 1.5) if xs else 0.0)
    ticks = dict(zip(xs, names, strict=True))
    pct = [100 * curve["agent"][n]["success"] for n in names]
    low = [100 * curve["agent"][n]["ci95"][0] for n in names]
    high = [100 * curve["agent"][n]["ci95"][1] for n in names]
    refs = [
        (f"{k} {100 * curve[k]['success']:.0f}%", 100 * curve[k]["success"])
        for k in ("oracle", "right+up", "random")
        if k in curve
    ]
    series = [("latent agent", xs, pct), ("95% low", xs, low), ("95% high", xs, high)]
    return svg_plot(
        series, "labelled transitions", f"% of {curve['mode']} levels solved", refs, xticks=ticks
    )
