"""`opengenie eval`: the paper's metrics on held-out clips, metrics.json and an HTML report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from opengenie.errors import UserError
from opengenie.options import CONTEXT_MASK, GUIDANCE, MIN_P, SEED, STEPS, TEMPERATURE, at_least
from opengenie.precision import PRECISIONS, resolve_precision

DESCRIPTION = """Evaluate a world with the project's protocol (docs/EVAL.md): tokenizer PSNR/SSIM,
teacher-forced next-frame PSNR, rollout PSNR against the horizon, ΔtPSNR (t=4, 25 MaskGIT steps,
temperature 1, inferred vs random actions among the codes in use), FVD@N with a Kinetics-400 I3D,
and latent-action consistency (NMI) where the data has true actions. Writes metrics.json and
report.html into --out, and action_map.json into the world (play uses it for arrow keys).

  opengenie eval --world worlds/tiny --data data/coinrun --clips 256 --out eval/tiny
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    from opengenie.eval.protocol import PLAY_STEPS

    p = commands.add_parser(
        "eval",
        help="the paper's metrics (PSNR, ΔtPSNR, FVD, action NMI) and an HTML report",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--world", help="World directory (default: the shipped CoinRun world)")
    p.add_argument("--data", required=True, help="dataset directory (opengenie data ...)")
    p.add_argument("--out", help="report directory (default: eval-<world name>)")
    p.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    p.add_argument(
        "--clips",
        type=at_least(2).arg("--clips"),
        default=256,
        help="clips N, one per episode (256)",
    )
    p.add_argument(
        "--seed", type=SEED.arg("--seed"), default=0, help="seed of clip choice and sampling (0)"
    )
    p.add_argument(
        "--steps", type=STEPS.arg("--steps"), default=25, help="MaskGIT steps per frame (25)"
    )
    p.add_argument(
        "--temperature",
        type=TEMPERATURE.arg("--temperature"),
        default=1.0,
        help="sampling temperature (1.0)",
    )
    # Sampler settings beyond the paper's, which play may use: off (0) in the protocol.
    for flag, option, what in (
        (
            "--guidance",
            GUIDANCE,
            "action guidance in every rollout: logits(a) + w (logits(a) - logits(standing still))",
        ),
        (
            "--context-mask",
            CONTEXT_MASK,
            "share of each earlier frame's tokens hidden from the dynamics model in every "
            "rollout, as its training hides them (the first frame stays whole)",
        ),
        (
            "--min-p",
            MIN_P,
            "min-p sampling in every rollout: drop each token's codes less likely than this "
            "share of its likeliest",
        ),
    ):
        p.add_argument(
            flag,
            type=option.arg(flag),
            default=0.0,
            help=f"{what}; 0, the protocol's, unless you measure a world played with it (0)",
        )
    p.add_argument(
        "--t", type=at_least(1).arg("--t"), default=4, help="frame ΔtPSNR scores (protocol: 4)"
    )
    p.add_argument(
        "--extra-steps",
        type=STEPS.list_arg("--extra-steps"),
        default=[PLAY_STEPS],
        metavar="K[,K...]",
        help=f"also report ΔtPSNR at these MaskGIT steps, labelled (default {PLAY_STEPS}: "
        "play's setting; '' for none)",
    )
    p.add_argument(
        "--extra-temperature",
        type=TEMPERATURE.list_arg("--extra-temperature"),
        default=[],
        metavar="T[,T...]",
        help="also report ΔtPSNR at these temperatures (with --steps), labelled",
    )
    p.add_argument(
        "--fvd-clips",
        type=at_least(0).arg("--fvd-clips"),
        help="clips for FVD (default: all N; 0 skips FVD). FVD@N is compared only at equal N",
    )
    p.add_argument("--fvd-cache", help="cache of real-data I3D statistics (~/.cache/opengenie)")
    p.add_argument(
        "--batch-size",
        type=at_least(1).arg("--batch-size"),
        default=32,
        help="clips per batch (32)",
    )
    p.add_argument(
        "--control-levels",
        type=at_least(0).arg("--control-levels"),
        default=32,
        help="CoinRun levels of the split replayed for the held-key control measurement "
        "(32; 0 skips it)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="dynamics matmuls under bf16 autocast or fp32; auto (default): bf16 where a short "
        "matmul test finds it faster (2-4x on CPUs with native bf16, far slower without)",
    )
    p.add_argument(
        "--no-action-map",
        action="store_true",
        help="do not write action_map.json into the world directory (never written into the "
        "shipped world: the report directory gets it)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from opengenie.atomic import atomic_write_text
    from opengenie.data import open_dataset
    from opengenie.eval.protocol import EvalSettings, FVDOptions, evaluate
    from opengenie.eval.report import write_report
    from opengenie.models import World
    from opengenie.models.world import SHIPPED_WORLD

    start = time.perf_counter()
    if args.split not in ("train", "val", "test"):
        raise UserError(f"unknown split {args.split!r}; use train, val or test")
    dataset = open_dataset(args.data)  # one-line errors: missing, not a dataset, empty
    world = World.load(args.world, device=args.device)
    world_dir = Path(args.world) if args.world else SHIPPED_WORLD
    extra = [(k, args.temperature) for k in args.extra_steps]
    extra += [(args.steps, temp) for temp in args.extra_temperature]
    settings = EvalSettings(
        split=args.split,
        clips=args.clips,
        seed=args.seed,
        t=args.t,
        steps=args.steps,
        temperature=args.temperature,
        guidance=args.guidance,
        context_mask=args.context_mask,
        min_p=args.min_p,
        extra=extra,
        batch_size=args.batch_size,
        fvd_clips=args.fvd_clips,
        dynamics_precision=resolve_precision(args.precision, args.device),
        control_levels=args.control_levels,
    )
    if settings.guidance:
        world.guidance_reference()  # a one-line error before any work
    out = Path(args.out) if args.out else Path(f"eval-{world_dir.resolve().name}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: pass a directory for the report")
    torch.set_flush_denormal(True)  # denormals made CPU steps several times slower here
    fvd = FVDOptions(cache_dir=args.fvd_cache, device=args.device, progress=not args.quiet)
    result = evaluate(world, dataset, settings, progress=not args.quiet, fvd=fvd)
    metrics = result.metrics
    metrics["world"] = {
        "path": str(world_dir),
        "preset": world.config.name,
        "num_actions": world.num_actions,
    }
    metrics["data"] = {"path": str(dataset.path), "sources": dataset.sources, "fps": dataset.fps}
    if result.action_map is not None:
        text = json.dumps(result.action_map, indent=2) + "\n"
        atomic_write_text(out / "action_map.json", text)
        # The shipped world lives inside the installed package: leave it as it shipped, also
        # when its path is passed by hand.
        shipped = world_dir.resolve() == SHIPPED_WORLD.resolve()
        if not args.no_action_map and not shipped:
            try:
                atomic_write_text(world_dir / "action_map.json", text)
                metrics["actions"]["action_map"] = str(world_dir / "action_map.json")
            except OSError as error:
                print(f"warning: could not write action_map.json into {world_dir}: {error}")
    metrics["timing"]["total"] = round(time.perf_counter() - start, 2)
    title = (
        f"opengenie eval: {world_dir.resolve().name} on {Path(dataset.path).name} ({args.split})"
    )
    metrics_path, report_path = write_report(out, metrics, result.pictures, title)
    _print_summary(metrics, sys.stdout)
    print(f"wrote {metrics_path} and {report_path}")
    return 0


def _print_summary(m: dict, stream) -> None:
    d = m["dynamics"]["delta_t_psnr"]
    s = m["settings"]
    lines = [
        f"clips {s['clips']} ({s['split']}, {s['episodes']} episodes, seed {s['seed']})",
        f"tokenizer PSNR {m['tokenizer']['psnr']:.2f} dB, SSIM {m['tokenizer']['ssim']:.4f}",
        f"next-frame PSNR {m['dynamics']['next_frame_psnr']:.2f} dB (teacher-forced)",
        f"ΔtPSNR(t={d['t']}, {d['label']}) {d['value']:.3f} dB "
        f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}], frame PSNR {d['frame_psnr']:.2f} dB",
    ]
    for e in m["dynamics"]["delta_t_psnr_extra"]:
        lines.append(
            f"ΔtPSNR(t={e['t']}, {e['label']}) {e['value']:.3f} dB "
            f"[{e['ci_low']:.3f}, {e['ci_high']:.3f}], frame PSNR {e['frame_psnr']:.2f} dB"
        )
    f = m["fvd"]
    lines.append(
        f"FVD@{f['n']} {f['value']:.1f}" if f["value"] is not None else f"FVD: {f['reason']}"
    )
    a = m["actions"]
    if a.get("nmi") is not None:
        lines.append(f"action NMI {a['nmi']:.3f}, best-mapping accuracy {a['accuracy']:.3f}")
    lines.append(f"codes in use {a['codes_used']} of {a['num_codes']}")
    if m.get("control"):
        from opengenie.eval.report import control_summary

        lines.append(control_summary(m["control"]))
        for e in m["control"].get("extra") or []:  # the same held keys at extra settings
            extra = {**m["control"], "bars": e["bars"]}
            label = f"steps={e['steps']}, temperature={e['temperature']:g}"
            lines.append(control_summary(extra).replace("control (", f"control at {label} (", 1))
    lines.append("time " + ", ".join(f"{k} {v:.0f}s" for k, v in m["timing"].items() if v >= 0.5))
    print("\n".join(lines), file=stream)
