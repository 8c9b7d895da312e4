"""`opengenie bench`: speed measurements written as JSON (never timed asserts in tests).

`bench models` measures, per preset, the parameter counts and the training throughput
(frames/s) of each phase in fp32 and with bf16 autocast, alternating the two so that drift on a
shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from opengenie.config import PRESETS, GenieConfig, preset
from opengenie.errors import UserError


def add_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="speed benchmarks that write JSON")
    kinds = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    models = kinds.add_parser("models", help="params and training frames/s of each preset")
    models.add_argument("--presets", default="tiny,small,coinrun", help="comma-separated")
    models.add_argument("--steps", type=int, default=6, help="timed steps per setting")
    models.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    models.add_argument("--batch", type=int, help="clips per step (default: min(preset, 8))")
    models.add_argument("--out", default="bench/results/models.json", help="JSON to write")
    models.set_defaults(func=run_models)


def parameter_counts(config: GenieConfig) -> dict[str, int]:
    from opengenie.models import World

    world = World(config)
    counts = {
        name: sum(p.numel() for p in getattr(world, name).parameters())
        for name in ("tokenizer", "lam", "dynamics")
    }
    counts["total"] = sum(counts.values())
    return counts


def _phase_step(config: GenieConfig, phase: str):
    """A closure doing one training step of `phase` on random frames; returns frames/step."""
    from opengenie.models import World

    world = World(config).train()
    if phase == "tokenizer":
        params = list(world.tokenizer.parameters())
    else:
        world.tokenizer.eval().requires_grad_(False)
        params = [*world.lam.parameters(), *world.dynamics.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step(video: torch.Tensor, bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if phase == "tokenizer":
                loss = world.tokenizer(video)["loss"]
            else:
                tokens = world.tokenizer.encode(video).flatten(2)
                lam = world.lam(video)
                loss = lam["loss"] + world.dynamics.masked_loss(tokens, lam["actions"])["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure_phase(config: GenieConfig, phase: str, batch: int, steps: int, warmup: int) -> dict:
    step = _phase_step(config, phase)
    shape = (batch, config.frames, config.image_size, config.image_size, config.channels)
    video = torch.randint(0, 256, shape, dtype=torch.uint8).float().div(255)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(warmup):
        step(video, False)
        step(video, True)
    for _ in range(steps):  # alternate the two precisions
        for name in ("fp32", "bf16"):
            start = time.perf_counter()
            step(video, name == "bf16")
            times[name].append(time.perf_counter() - start)
    frames = batch * config.frames
    result = {}
    for name, values in times.items():
        median = statistics.median(values)
        result[name] = {"step_s_median": median, "frames_per_s": frames / median}
    result["bf16_speedup"] = result["fp32"]["step_s_median"] / result["bf16"]["step_s_median"]
    return result


def run_models(args: argparse.Namespace) -> int:
    torch.set_flush_denormal(True)  # as in training (see train/loop.py)
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise UserError(f"unknown preset(s) {unknown}: choose from {', '.join(PRESETS)}")
    report = {
        "bench": "models",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "presets": {},
    }
    for name in names:
        config = preset(name)
        batch = args.batch or min(8, config.tokenizer_optim.batch_size)
        entry = {"params": parameter_counts(config), "batch": batch, "frames": config.frames}
        for phase in ("tokenizer", "dynamics"):
            print(f"bench {name} {phase} (batch {batch} x {config.frames} frames)...", flush=True)
            entry[phase] = measure_phase(config, phase, batch, args.steps, args.warmup)
        report["presets"][name] = entry
        print(json.dumps({name: entry}), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0
