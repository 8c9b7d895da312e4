#!/usr/bin/env python3
"""Package a trained World as the CoinRun world that ships inside opengenie.

Writes src/opengenie/assets/coinrun_world/: config.json and model.safetensors (bf16, to halve
the wheel), the world's action_map.json (written by `opengenie eval`), its eval metrics.json,
the model card, prompt.png (play's default start) and a few more prompts from test levels.

    python scripts/ship_world.py --world runs/world --data data/coinrun \
        --metrics runs/eval/metrics.json --card MODEL_CARD.md
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from opengenie.data.storage import open_dataset
from opengenie.models.world import SHIPPED_WORLD, World

LIMIT_MB = 30  # the package-data budget for the shipped world (issue #7)


def write_prompts(data: Path, out: Path, count: int) -> list[str]:
    """The first frame of the first `count` test episodes (levels never trained on)."""
    ds = open_dataset(data)
    ids = ds.episode_ids("test")[:count]
    if len(ids) == 0:
        raise SystemExit(f"{data} has no test split to take prompts from")
    (out / "prompts").mkdir()
    names = []
    for n, episode in enumerate(ids):
        frame = np.ascontiguousarray(ds.frames(int(episode))[0])  # (H, W, 3) uint8
        level = ds.episode(int(episode)).level_seed
        name = f"prompts/test_level_{level if level is not None else n}.png"
        Image.fromarray(frame).save(out / name)
        names.append(name)
    shutil.copy(out / names[0], out / "prompt.png")
    return names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--world", required=True, help="trained World directory")
    p.add_argument("--data", required=True, help="data set with a test split (prompts)")
    p.add_argument("--metrics", required=True, help="metrics.json from `opengenie eval`")
    p.add_argument("--card", required=True, help="the model card (Markdown) to ship")
    p.add_argument("--prompts", type=int, default=6, help="prompt images to ship")
    p.add_argument("--out", default=str(SHIPPED_WORLD), help="where to write the shipped world")
    args = p.parse_args()

    world = World.load(args.world)
    if world.action_map is None:
        raise SystemExit(f"{args.world} has no action_map.json: run `opengenie eval` on it")
    out = Path(args.out)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        staged = Path(tmp) / "world"
        world.save(staged, dtype=torch.bfloat16)  # action_map.json comes along
        shutil.copy(args.metrics, staged / "metrics.json")
        shutil.copy(args.card, staged / "MODEL_CARD.md")
        names = write_prompts(Path(args.data), staged, args.prompts)
        size_mb = sum(f.stat().st_size for f in staged.rglob("*") if f.is_file()) / 2**20
        if size_mb > LIMIT_MB:
            raise SystemExit(f"the world is {size_mb:.1f} MB, over the {LIMIT_MB} MB budget")
        # Check the staged copy loads and steps before it replaces the shipped one.
        check = World.load(staged)
        check.sampling.steps = 2
        check.reset(staged / "prompt.png", seed=0)
        check.step(0)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(staged), out)
    print(f"shipped {args.world} to {out} ({size_mb:.1f} MB, prompts: {', '.join(names)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
