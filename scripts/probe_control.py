#!/usr/bin/env python3
"""Eval's held-key control bars for several worlds or checkpoints, all on one recording of the
game's held keys, so that their figures differ by the world only (issue 14). Faster than
`opengenie eval` per checkpoint: the control section alone, at play's sampler by default.

  python scripts/probe_control.py shipped runs/w/checkpoints/step-00003000 runs/w \\
      --levels 32 --steps 2 --out runs/probe_control.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from opengenie.data.sources import DEFAULT_LEVEL_RANGES
from opengenie.eval.control import ControlSettings, control_section
from opengenie.eval.held_keys import record_held_keys
from opengenie.models import World
from opengenie.options import CONTEXT_MASK, MIN_P

FIRST_TEST_LEVEL = DEFAULT_LEVEL_RANGES["test"][0]  # CoinRun's test levels (200000)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("worlds", nargs="+", help="world or checkpoint directories; 'shipped'")
    p.add_argument("--levels", type=int, default=32, help="test levels replayed (32)")
    p.add_argument(
        "--first-level",
        type=int,
        default=FIRST_TEST_LEVEL,
        help=f"first level replayed ({FIRST_TEST_LEVEL}: eval's); another block: choose settings",
    )
    p.add_argument("--steps", type=int, default=2, help="MaskGIT steps (2: play's default)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1.0)")
    p.add_argument("--guidance", type=float, default=0.0, help="action guidance (0: none)")
    p.add_argument(
        "--context-mask",
        type=CONTEXT_MASK.arg("--context-mask"),
        default=0.0,
        help="share of context tokens hidden (0: none)",
    )
    p.add_argument(
        "--min-p", type=MIN_P.arg("--min-p"), default=0.0, help="min-p truncation (0: none)"
    )
    p.add_argument("--out", type=Path, help="JSON of each world's control section (bars first)")
    args = p.parse_args()
    torch.set_flush_denormal(True)  # denormals slow CPU matmuls several-fold
    levels = np.arange(args.first_level, args.first_level + args.levels)
    held = record_held_keys(levels)
    settings = ControlSettings(
        args.steps,
        args.temperature,
        guidance=args.guidance,
        context_mask=args.context_mask,
        min_p=args.min_p,
    )
    precision = torch.autocast("cpu", dtype=torch.bfloat16)
    results = {}
    for name in args.worlds:
        world = World.load(None if name == "shipped" else name).eval()
        control, _ = control_section(world, held, settings, precision, progress=False)
        bars = control["bars"]
        results[name] = {"bars": bars, **control}  # per movement: the world's and game's scroll
        print(name, {k: round(v, 3) if isinstance(v, float) else v for k, v in bars.items()})
        if args.out:  # after each world: a long run keeps what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
