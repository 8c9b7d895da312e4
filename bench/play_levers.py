"""Benchmark: each candidate speed-up of a play frame, measured alone against the plain path.

    python bench/play_levers.py                                   # the shipped world, 2 steps
    python bench/play_levers.py --steps 8 --rounds 5 --out bench/results/play_levers_8.json

One process, one World, every lever timed in alternation (round robin) on its own session
with a full cache, so load from other jobs hits them alike. Each lever is a change to the
plain path (play's defaults: bf16 dynamics, one torch thread, the commit pass that skips the
last block's attention and FFN); the JSON gives its ms per frame (median) and its speed-up
over the plain path in the same run. Kept in play only where it wins (docs/PLAY.md).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from opengenie.atomic import atomic_write_json
from opengenie.models import World
from opengenie.models.world import PlaySession
from opengenie.play.bench import _time_frames as time_frames  # the same timer as bench play


class FullPassCommit(PlaySession):
    """The path before `Dynamics.commit`: the commit pass runs the whole model and its head."""

    def next_tokens(self, action: int) -> torch.Tensor:
        dynamics = self.world.dynamics
        original = dynamics.commit

        def full_pass(tokens, action_vector, cache):
            dynamics.step_logits(tokens, action_vector, cache, update_cache=True)

        dynamics.commit = full_pass
        try:
            return super().next_tokens(action)
        finally:
            dynamics.commit = original


def _int8_world(world: World) -> World:
    """Linear layers of the dynamics model as int8 weights, activations quantized per call."""
    q = copy.deepcopy(world).set_dynamics_dtype(torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's eager quantization is deprecated
        q.dynamics = torch.ao.quantization.quantize_dynamic(
            q.dynamics, {torch.nn.Linear}, dtype=torch.qint8
        )
    return q


def _compiled_world(world: World) -> World:
    c = copy.deepcopy(world)
    blocks = c.dynamics.transformer.blocks
    c.dynamics.transformer.blocks = torch.nn.ModuleList(
        torch.compile(b, dynamic=True) for b in blocks
    )
    return c


def _session(world: World, steps: int, prompt: np.ndarray, cls=PlaySession) -> PlaySession:
    session = cls(world, copy.deepcopy(world.sampling))
    session.sampling.steps = steps
    session.reset(prompt, seed=0)
    for _ in range(world.config.frames + 2):  # a full cache: play's steady state
        session.step(0)
    return session


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", help="World directory (default: the shipped CoinRun world)")
    p.add_argument("--steps", type=int, default=2, help="MaskGIT steps per frame (2)")
    p.add_argument("--frames", type=int, default=20, help="timed frames per lever per round")
    p.add_argument("--rounds", type=int, default=3, help="round-robin rounds")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (minutes)")
    p.add_argument("--out", default="bench/results/play_levers.json", help="JSON to write")
    args = p.parse_args()

    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    fp32 = World.load(args.world)
    bf16 = copy.deepcopy(fp32).set_dynamics_dtype(torch.bfloat16)
    size = fp32.config.image_size
    prompt = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    load_before = os.getloadavg()

    levers: dict[str, tuple[PlaySession, int, str]] = {  # name -> (session, threads, what)
        "plain": (_session(bf16, args.steps, prompt), 1, "play's path"),
        "full_pass_commit": (
            _session(bf16, args.steps, prompt, FullPassCommit),
            1,
            "the commit pass runs every block in full and the head (the path before)",
        ),
        "two_threads": (_session(bf16, args.steps, prompt), 2, "torch threads 2 instead of 1"),
        "fp32": (_session(fp32, args.steps, prompt), 1, "fp32 dynamics instead of bf16"),
        "int8_dynamic": (
            _session(_int8_world(fp32), args.steps, prompt),
            1,
            "dynamics Linear layers int8 (torch.ao quantize_dynamic)",
        ),
    }
    if args.compile:
        start = time.perf_counter()
        session = _session(_compiled_world(bf16), args.steps, prompt)
        what = f"torch.compile of each block, dynamic shapes ({time.perf_counter() - start:.0f} s)"
        levers["compiled_blocks"] = (session, 1, what)

    times: dict[str, list[float]] = {name: [] for name in levers}
    for r in range(args.rounds):
        for name, (session, threads, _) in levers.items():
            torch.set_num_threads(threads)
            times[name] += time_frames(lambda s=session: s.step(0), args.frames)
        torch.set_num_threads(1)
        medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in medians.items()))

    plain = statistics.median(times["plain"])
    report = {
        "bench": "play_levers",
        "world": str(args.world or "shipped"),
        "steps": args.steps,
        "what": "ms per PlaySession.step (sample + commit + decode), full cache, median",
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "levers": {
            name: {
                "what": what,
                "ms_per_frame_median": statistics.median(times[name]) * 1000,
                "frames_per_s": 1.0 / statistics.median(times[name]),
                "speedup_over_plain": plain / statistics.median(times[name]),
                "frames_timed": len(times[name]),
            }
            for name, (_, _, what) in levers.items()
        },
    }
    atomic_write_json(Path(args.out), report)
    for name, entry in report["levers"].items():
        ms, gain = entry["ms_per_frame_median"], entry["speedup_over_plain"]
        print(f"{name:>18}: {ms:6.1f} ms, x{gain:.2f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
