#!/usr/bin/env python3
"""Hold one key for many world steps from CoinRun level starts (or with --start mid from eval's
mid-level starts, where ← has room), in the game and in each world,
as a player holding → in `make play` does (issue 14). Eval's control section scores 16 game
frames (4 world steps at frame skip 4); this scores a longer hold (16 world steps by default).

Per level: the game and the world (play's path: World.reset/step, bf16 dynamics, a seed per
level) each hold the key for --hold world steps; the scene's scroll is estimated from the first
frame to the last (eval.scroll.estimate_scroll, as the browser test does; it reaches 24 px in x
and 40 in y, and from level starts the game scrolls ~15 px and then stands at a wall). Not
summed step by step: a blocky world that moves part of a token a step reads as 0 px per step.
A level counts where the world's dx has the game's sign and lies within max(4 px, 40%) of it,
and its dy within 4 px of the game's. With --seeds N each level is played N times (seeds level,
level + 1e6, ...): play's default prompt is one level, and one seed is a coin flip there.

  python scripts/probe_long_hold.py shipped runs/w --levels 48 --guidance 0.25 --context-mask 0.5
  python scripts/probe_long_hold.py shipped runs/w --levels 1 --seeds 20   # play's default prompt
  python scripts/probe_long_hold.py shipped --key left --start mid --hold 4 --levels 8 --seeds 9
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from opengenie.data.sources import DEFAULT_LEVEL_RANGES
from opengenie.eval.control import TOLERANCE_PX, TOLERANCE_SHARE
from opengenie.eval.held_keys import MOVEMENT_ACTION, START_KINDS, _env, _reach_mid, hold_movement
from opengenie.eval.scroll import estimate_scroll
from opengenie.models import World
from opengenie.options import CONTEXT_MASK, GUIDANCE, MIN_P, STEPS, TEMPERATURE

FIRST_TEST_LEVEL = DEFAULT_LEVEL_RANGES["test"][0]  # CoinRun's test levels (200000)
SEED_STRIDE = 1_000_000  # seed s of a level: level + s * stride (s = 0: the level's own seed)


def scroll(frames: list[np.ndarray]) -> np.ndarray:
    """(dx, dy) from the first frame (H, W, 3) to the last."""
    dx, dy = estimate_scroll(frames[0], frames[-1])
    return np.array([float(dx), float(dy)])


def game_frames(level: int, key: str, hold: int, skip: int, start: str) -> list[np.ndarray] | None:
    """The start frame (the level's first, or eval's mid-level start), then the frame after
    each world step of `skip` game frames; None where the episode ended on the way to the
    mid-level start or while the key was held (eval marks those cases invalid too)."""
    env = _env(level)
    if start == "mid" and not _reach_mid(env):
        return None
    clip, lasted = hold_movement(env, key, hold * skip)  # (1 + hold * skip, H, W, 3)
    return list(clip[::skip]) if lasted else None


def probe(
    world: World, key: str, levels: list[int], hold: int, seeds: int = 1, start: str = "first"
) -> dict:
    code = world.action_map["keys"][key]
    skip = int(world.config.frame_skip)
    rows = []
    for level in levels:
        game = game_frames(level, key, hold, skip, start)
        if game is None:
            continue
        g = scroll(game)
        tolerance = max(TOLERANCE_PX, TOLERANCE_SHARE * abs(g[0]))
        for s in range(seeds):
            seen = [world.reset(game[0], seed=level + s * SEED_STRIDE)]
            seen += [world.step(code) for _ in range(hold)]
            w = scroll(seen)
            x_ok = bool(np.sign(w[0]) == np.sign(g[0]) and abs(w[0] - g[0]) <= tolerance)
            y_ok = bool(abs(w[1] - g[1]) < TOLERANCE_PX)
            rows.append(
                {
                    "level": level,
                    "seed": level + s * SEED_STRIDE,
                    "game": g.tolist(),
                    "world": w.tolist(),
                    "x_ok": x_ok,
                    "ok": x_ok and y_ok,
                }
            )
    if not rows:
        raise SystemExit(f"no level of {levels[0]}..{levels[-1]} lasted the hold: nothing to score")
    return {
        "share_ok": float(np.mean([r["ok"] for r in rows])),
        "share_x_ok": float(np.mean([r["x_ok"] for r in rows])),
        "levels": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("worlds", nargs="+", help="world directories; 'shipped'")
    p.add_argument("--key", default="right", choices=sorted(MOVEMENT_ACTION), help="(right)")
    p.add_argument("--hold", type=int, default=16, help="world steps the key is held (16)")
    p.add_argument(
        "--start",
        default="first",
        choices=START_KINDS,
        help="first: the level's first frame (default); mid: eval's mid-level start (run "
        "right, then stand still), where ← has room",
    )
    p.add_argument("--levels", type=int, default=48, help="test levels from 200000 (48)")
    p.add_argument("--seeds", type=int, default=1, help="world seeds per level (1)")
    p.add_argument("--steps", type=STEPS.arg("--steps"), default=2, help="MaskGIT steps (2)")
    p.add_argument("--temperature", type=TEMPERATURE.arg("--temperature"), help="(the world's)")
    p.add_argument("--guidance", type=GUIDANCE.arg("--guidance"), help="(the world's)")
    p.add_argument("--context-mask", type=CONTEXT_MASK.arg("--context-mask"), help="(the world's)")
    p.add_argument("--min-p", type=MIN_P.arg("--min-p"), help="(the world's)")
    p.add_argument("--out", type=Path, help="JSON of each world's levels")
    args = p.parse_args()
    if args.levels < 1 or args.seeds < 1 or args.hold < 1:
        p.error("--levels, --seeds and --hold must be at least 1")
    torch.set_flush_denormal(True)  # denormals slow CPU matmuls several-fold
    levels = list(range(FIRST_TEST_LEVEL, FIRST_TEST_LEVEL + args.levels))
    results = {}
    for name in args.worlds:
        world = World.load(None if name == "shipped" else name).eval()
        world.set_dynamics_dtype(torch.bfloat16)  # play's precision
        world.sampling.steps = args.steps
        for field in ("temperature", "guidance", "min_p"):
            if getattr(args, field) is not None:
                setattr(world.sampling, field, getattr(args, field))
        if args.context_mask is not None:
            world.sampling.context_mask = args.context_mask
        r = results[name] = probe(world, args.key, levels, args.hold, args.seeds, args.start)
        cases = f"{len({row['level'] for row in r['levels']})} levels x {args.seeds} seeds"
        head = f"{name}: hold {args.key} {args.hold} steps from {args.start} starts, {cases}"
        print(f"{head}: the game's way {r['share_ok']:.2f} (in x alone {r['share_x_ok']:.2f})")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
