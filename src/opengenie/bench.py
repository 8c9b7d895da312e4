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

from opengenie.atomic import atomic_write_json
from opengenie.config import PRESETS, GenieConfig, preset
from opengenie.errors import UserError
from opengenie.options import at_least


def add_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="speed benchmarks that write JSON")
    kinds = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    models = kinds.add_parser("models", help="params and training frames/s of each preset")
    models.add_argument("--presets", default="tiny,small,coinrun", help="comma-separated")
    models.add_argument(
        "--steps", type=at_least(1).arg("--steps"), default=6, help="timed steps per setting"
    )
    models.add_argument(
        "--warmup", type=at_least(0).arg("--warmup"), default=2, help="untimed steps first"
    )
    models.add_argument(
        "--batch",
        type=at_least(1).arg("--batch"),
        help="clips per step (default: min(preset, 8))",
    )
    models.add_argument("--out", default="bench/results/models.json", help="JSON to write")
    models.set_defaults(func=run_models)
    tok = kinds.add_parser(
        "tokenizer",
        help="tokenizer training speed vs the naive reference, alternating in one run",
        description="Times training steps of opengenie's tokenizer and of the deliberately naive "
        "reference tokenizer (shared/bench/reference_tokenizer.py) at the same sizes, "
        "alternating one step of each, and reports the ratio of their median step times.",
    )
    tok.add_argument(
        "--reference",
        default=str(Path(__file__).resolve().parents[3] / "shared/bench/reference_tokenizer.py"),
        help="path to reference_tokenizer.py",
    )
    tok.add_argument(
        "--steps", type=at_least(1).arg("--steps"), default=20, help="timed steps of each"
    )
    tok.add_argument(
        "--warmup", type=at_least(0).arg("--warmup"), default=3, help="untimed steps of each first"
    )
    tok.add_argument("--batch", type=at_least(1).arg("--batch"), default=8)
    tok.add_argument("--bf16", action="store_true", help="bf16 autocast for ours")
    tok.add_argument("--compile", action="store_true", help="torch.compile ours")
    tok.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    tok.add_argument("--out", default="bench/results/tokenizer_vs_reference.json")
    tok.set_defaults(func=run_tokenizer_vs_reference)

    from opengenie.play.bench import add_parser as add_play_bench

    add_play_bench(kinds)  # `bench play`: frames/s of play and the cache speed-up (issue 6)


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
    """Median step time of `phase` on `batch` x `config.frames` frames, fp32 vs bf16 autocast.

    A tokenizer with a temporal window trains on window-length clips, so it is timed that way
    too: the same frames per step, cut into more, shorter clips.
    """
    step = _phase_step(config, phase)
    clip = config.tokenizer_clip_frames if phase == "tokenizer" else config.frames
    clips = batch * config.frames // clip
    shape = (clips, clip, config.image_size, config.image_size, config.channels)
    video = torch.randint(0, 256, shape, dtype=torch.uint8).float().div(255)  # (B, T, H, W, C)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(warmup):
        step(video, False)
        step(video, True)
    for _ in range(steps):  # alternate the two precisions
        for name in ("fp32", "bf16"):
            start = time.perf_counter()
            step(video, name == "bf16")
            times[name].append(time.perf_counter() - start)
    frames = clips * clip
    result: dict = {"clips": clips, "clip_frames": clip}
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
    atomic_write_json(out, report)
    print(f"wrote {out}")
    return 0


def _reference_step(path: str, batch: int, config: GenieConfig):
    """One training step of the naive reference tokenizer at our tokenizer's sizes."""
    import importlib.util
    from types import SimpleNamespace

    import numpy as np
    import torch.nn.functional as F

    if not Path(path).exists():
        raise UserError(f"reference tokenizer not found at {path}: pass --reference PATH")
    spec = importlib.util.spec_from_file_location("reference_tokenizer", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    t = config.tokenizer
    a = SimpleNamespace(
        patch=t.patch,
        dim=t.dim,
        ffn=t.ffn,
        blocks=t.enc_depth,
        heads=t.heads,
        frames=config.frames,
        size=config.image_size,
    )
    pp, h = 3 * a.patch * a.patch, a.size // a.patch
    code_dim, codes = t.quantizer.code_dim, t.quantizer.codes
    enc, dec = ref.Stack(pp, code_dim, a), ref.Stack(code_dim, pp, a)
    codebook = torch.nn.Parameter(torch.randn(codes, code_dim))
    params = [*enc.parameters(), *dec.parameters(), codebook]
    opt = torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.9), weight_decay=1e-4)
    rng = np.random.default_rng(0)

    def step() -> None:  # the body of the reference script's training loop
        frames = rng.integers(0, 256, (batch, a.frames, a.size, a.size, 3), dtype=np.uint8)
        x = torch.from_numpy(frames).float().div(255)
        x = x.view(batch, a.frames, h, a.patch, h, a.patch, 3).permute(0, 1, 2, 4, 3, 5, 6)
        x = x.reshape(batch, a.frames, h * h, pp)
        z = F.normalize(enc(x).float(), dim=-1)
        c = F.normalize(codebook, dim=-1)
        q = c[(z @ c.t()).argmax(-1)]
        recon = torch.sigmoid(dec(z + (q - z).detach()).float())
        loss = F.mse_loss(recon, x) + F.mse_loss(q, z.detach()) + 0.25 * F.mse_loss(z, q.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in params)


def _our_tokenizer_step(batch: int, config: GenieConfig, bf16: bool, compile_: bool = False):
    import numpy as np

    from opengenie.models import VideoTokenizer

    model = VideoTokenizer(config).train()
    o = config.tokenizer_optim
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    rng = np.random.default_rng(0)
    shape = (batch, config.frames, config.image_size, config.image_size, 3)
    forward = torch.compile(model) if compile_ else model

    def step() -> None:  # what the trainer does per step, data conversion included
        video = torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8)).float().div_(255)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = forward(video)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in model.parameters())


def run_tokenizer_vs_reference(args: argparse.Namespace) -> int:
    torch.set_flush_denormal(True)  # as in training (see train/loop.py)
    # The reference attends over every earlier frame: compare like with like unless --set says
    # otherwise (the tiny preset trains with a 4-frame temporal window).
    config = preset("tiny", ["tokenizer.temporal_window=0", *args.set])
    ours, our_params = _our_tokenizer_step(args.batch, config, args.bf16, args.compile)
    ref, ref_params = _reference_step(args.reference, args.batch, config)
    times: dict[str, list[float]] = {"opengenie": [], "reference": []}
    for _ in range(args.warmup):
        ours()
        ref()
    for _ in range(args.steps):  # alternate, so drift on a shared machine hits both alike
        for name, fn in (("opengenie", ours), ("reference", ref)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    frames = args.batch * config.frames
    t = config.tokenizer
    report = {
        "bench": "tokenizer_vs_reference",
        "sizes": {
            "patch": t.patch,
            "dim": t.dim,
            "ffn": t.ffn,
            "blocks": [t.enc_depth, t.dec_depth],
            "heads": t.heads,
            "batch": args.batch,
            "frames": config.frames,
            "temporal_window": t.temporal_window,
        },
        "ours_bf16_autocast": args.bf16,
        "ours_compiled": args.compile,
        "params": {"opengenie": our_params, "reference": ref_params},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    for name, values in times.items():
        median = statistics.median(values)
        report[name] = {"step_s_median": median, "frames_per_s": frames / median}
    report["speedup"] = report["reference"]["step_s_median"] / report["opengenie"]["step_s_median"]
    out = Path(args.out)
    atomic_write_json(out, report)
    print(json.dumps(report))
    return 0
