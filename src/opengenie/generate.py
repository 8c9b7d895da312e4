"""`opengenie generate`: play a list of actions from a prompt image and write a GIF or MP4."""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from opengenie.errors import UserError
from opengenie.options import FRAMES, MAX_FRAMES, SCALE, SEED, STEPS, TEMPERATURE, check_video


def parse_actions(text: str, num_actions: int, frames: int, seed: int) -> list[int]:
    """'0,0,2,...' or 'random' (uniform over all codes, `frames` of them) -> action ids."""
    if text.strip() == "random":
        return np.random.default_rng(seed).integers(0, num_actions, frames).tolist()
    try:
        actions = [int(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise UserError(f"--actions must be 'random' or ids like 0,0,2 (got {text!r})") from None
    bad = [a for a in actions if not 0 <= a < num_actions]
    if bad or not actions:
        raise UserError(f"action ids must be in 0..{num_actions - 1} (got {text!r})")
    return actions


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "generate",
        help="roll out a world from a prompt image and a list of actions to a GIF/MP4",
        description="Roll out a world from a prompt image with given latent actions.",
    )
    p.add_argument("--world", help="World directory (default: the shipped CoinRun world)")
    p.add_argument(
        "--prompt",
        help="prompt image, any size, centre-cropped (default: the world's prompt.png)",
    )
    p.add_argument("--actions", default="random", help="'0,0,2,...' (0-based ids) or 'random'")
    p.add_argument(
        "--frames",
        type=FRAMES.arg("--frames"),
        default=32,
        help=f"frames to generate with 'random' (1..{MAX_FRAMES})",
    )
    p.add_argument("--out", required=True, help="output .gif or .mp4")
    p.add_argument(
        "--steps",
        type=STEPS.arg("--steps"),
        help=f"MaskGIT steps per frame, {STEPS.describe()} (default: the world's)",
    )
    p.add_argument(
        "--temperature",
        type=TEMPERATURE.arg("--temperature"),
        help=f"sampling temperature, {TEMPERATURE.describe()} (default: the world's)",
    )
    p.add_argument(
        "--seed", type=SEED.arg("--seed"), default=0, help="seed for sampling and random actions"
    )
    p.add_argument(
        "--scale",
        type=SCALE.arg("--scale"),
        default=4,
        help=f"upscale factor of the written video, {SCALE.describe()} (default 4)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from opengenie.models import World
    from opengenie.models.world import world_prompt
    from opengenie.videowrite import write_video

    world = World.load(args.world, device=args.device)
    if args.steps is not None:  # options are checked when parsed (opengenie.options)
        world.sampling.steps = args.steps
    if args.temperature is not None:
        world.sampling.temperature = args.temperature
    actions = parse_actions(args.actions, world.num_actions, args.frames, args.seed)
    check_video(len(actions) + 1, world.config.image_size, args.scale)  # before any rollout
    prompt = args.prompt or world_prompt(args.world)
    if prompt is None:
        where = args.world or "the shipped world"
        raise UserError(f"{where} has no prompt.png: pass --prompt IMAGE")
    frames = [world.reset(prompt, seed=args.seed)]
    for action in tqdm(actions, desc="generating", unit="frame"):
        frames.append(world.step(action))
    path = write_video(frames, args.out, fps=world.config.fps, scale=args.scale)
    print(f"wrote {len(frames)} frames to {path} (actions {','.join(map(str, actions))})")
    return 0
