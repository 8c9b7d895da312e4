#!/usr/bin/env python3
"""The README's first picture: the game and the world side by side, playing the same held keys.

From a test level's first frame, both hold a sequence of keys (→ for 16 frames, nothing for 6,
← for 16, ↑ for 14, by default); the world sends the latent action that play sends for each key
(its action_map.json, with play's fallback for combos); a world with a frame skip k steps once
every k game frames and shows its frame until the next step. Writes an upscaled GIF and a PNG
sheet.

    python scripts/held_keys_gif.py --out docs/images/held_keys.gif
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from opengenie.eval.control import movement_code
from opengenie.eval.held_keys import MOVEMENT_ACTION, _act, _env
from opengenie.models import World
from opengenie.options import CONTEXT_MASK, MIN_P
from opengenie.play.cli import DEFAULT_STEPS
from opengenie.precision import resolve_precision


def parse_plan(text: str) -> list[tuple[str, int]]:
    """ "right:16,none:6" -> [("right", 16), ("none", 6)]."""
    plan = []
    for item in text.split(","):
        name, _, count = item.partition(":")
        if name not in MOVEMENT_ACTION or not count.isdigit():
            raise SystemExit(f"bad step {item!r}: use movement:frames; {list(MOVEMENT_ACTION)}")
        plan.append((name, int(count)))
    return plan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--world", help="World directory (default: the shipped one)")
    p.add_argument("--level", type=int, default=200000, help="test level to start from")
    p.add_argument("--plan", default="right:16,none:6,left:16,jump:14")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="MaskGIT steps (play's)")
    p.add_argument("--guidance", type=float, help="action guidance (default: the world's)")
    p.add_argument(
        "--context-mask",
        type=CONTEXT_MASK.arg("--context-mask"),
        help="share of context tokens hidden (default: the world's)",
    )
    p.add_argument("--min-p", type=MIN_P.arg("--min-p"), help="min-p (default: the world's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--out", required=True, help="GIF path; a PNG strip is written beside it")
    args = p.parse_args()
    torch.set_flush_denormal(True)
    world = World.load(args.world)
    bf16 = resolve_precision("auto") == "bf16"  # play's default choice on this host
    world.set_dynamics_dtype(torch.bfloat16 if bf16 else torch.float32)
    skip = int(world.config.frame_skip)  # game frames per world step
    world.sampling.steps = args.steps
    if args.guidance is not None:
        world.sampling.guidance = args.guidance
    if args.context_mask is not None:
        world.sampling.context_mask = args.context_mask
    if args.min_p is not None:
        world.sampling.min_p = args.min_p
    keys = (world.action_map or {}).get("keys", {})
    env = _env(args.level)
    _, ob, _ = env.observe()
    game = [ob["rgb"][0].copy()]
    frames = [world.reset(game[0], seed=args.seed)]
    labels = ["start"]
    for name, count in parse_plan(args.plan):
        code = movement_code(keys, name)
        if code is None:
            raise SystemExit(f"the world pairs no latent action with {name!r}: {keys}")
        for i in range(count):
            frame, _ = _act(env, MOVEMENT_ACTION[name])
            game.append(frame)
            frames.append(world.step(code) if (i + 1) % skip == 0 else frames[-1])
            labels.append(f"holding {name}")
    s, h = args.scale, game[0].shape[0]
    pictures = []
    for g, w, label in zip(game, frames, labels, strict=True):
        both = np.concatenate([g, np.full((h, 2, 3), 255, np.uint8), w], axis=1)
        image = Image.fromarray(both).resize((both.shape[1] * s, h * s), Image.Resampling.NEAREST)
        canvas = Image.new("RGB", (image.width, image.height + 18), "white")
        canvas.paste(image, (0, 18))
        draw = ImageDraw.Draw(canvas)
        draw.text((4, 3), f"game   key: {label}", fill="black")
        draw.text((image.width // 2 + 4, 3), "world", fill="black")
        pictures.append(canvas)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(out, save_all=True, append_images=pictures[1:], duration=100, loop=0)
    every = pictures[:: max(1, -(-len(pictures) // 12))][:12]  # 12 frames, 3 rows of 4
    w, h2 = every[0].size
    sheet = Image.new("RGB", (4 * w, 3 * h2), "white")
    for i, x in enumerate(every):
        sheet.paste(x, ((i % 4) * w, (i // 4) * h2))
    sheet.save(out.with_suffix(".png"))
    print(f"wrote {out} ({len(pictures)} frames) and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
