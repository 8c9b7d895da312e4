"""`opengenie train tokenizer|dynamics|all`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from opengenie.config import PRESETS, preset
from opengenie.errors import UserError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model sizes")
    p.add_argument("--data", required=True, help="data set directory (from `opengenie data`)")
    p.add_argument("--val-data", help="data set whose val split validates (default: --data)")
    p.add_argument("--steps", type=int, help="total steps to reach (default: the preset's)")
    p.add_argument("--minutes", type=float, help="wall-clock budget per phase")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: the preset's choice per phase)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--keep", type=int, default=3, help="keep the last K checkpoints")
    p.add_argument("--val-every", type=int, default=500, help="validate every N steps (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--init-from", help="fine-tune from this World (or tokenizer run)")
    p.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard logs")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field"
    )


def add_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train the tokenizer, then LAM + dynamics",
        description="Genie's two phases. Runs under torchrun for DDP (gloo on CPU, NCCL on GPU).",
    )
    phases = train.add_subparsers(dest="phase", metavar="PHASE", required=True)
    tok = phases.add_parser("tokenizer", help="phase 1: the video tokenizer")
    _common(tok)
    tok.add_argument("--out", required=True, help="tokenizer run directory")
    tok.set_defaults(func=run_tokenizer)
    dyn = phases.add_parser("dynamics", help="phase 2: LAM + dynamics on a trained tokenizer")
    _common(dyn)
    dyn.add_argument(
        "--tokenizer", help="tokenizer run from phase 1, or a World whose tokenizer to use"
    )
    dyn.add_argument("--out", required=True, help="World directory to write")
    dyn.set_defaults(func=run_dynamics)
    both = phases.add_parser("all", help="both phases; --out is the World directory")
    _common(both)
    both.add_argument("--out", required=True, help="World directory (tokenizer run beside it)")
    both.set_defaults(func=run_all)


def _phase_args(args: argparse.Namespace, out: str, resume: bool):
    from opengenie.train.loop import RunOptions
    from opengenie.train.phases import PhaseArgs

    for name in ("steps", "save_every", "val_every", "keep"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "steps" else 0):
            raise UserError(f"--{name.replace('_', '-')} must be a positive number")
    if args.minutes is not None and args.minutes <= 0:
        raise UserError("--minutes must be > 0")
    opts = RunOptions(
        steps=args.steps,
        minutes=args.minutes,
        device=args.device,
        bf16=args.bf16,
        compile=args.compile,
        save_every=args.save_every,
        keep=args.keep,
        val_every=args.val_every,
        seed=args.seed,
        tensorboard=not args.no_tensorboard,
    )
    return PhaseArgs(
        config=preset(args.preset, args.set),
        data=args.data,
        out=out,
        opts=opts,
        resume=resume,
        val_data=args.val_data,
        init_from=args.init_from,
        overrides=list(args.set or []),
    )


def _report(summary: dict) -> None:
    print(json.dumps(summary))


def run_tokenizer(args: argparse.Namespace) -> int:
    from opengenie.train.phases import train_tokenizer

    _report(train_tokenizer(_phase_args(args, args.out, args.resume)))
    return 0


def run_dynamics(args: argparse.Namespace) -> int:
    from opengenie.train.phases import train_dynamics

    _report(train_dynamics(_phase_args(args, args.out, args.resume), args.tokenizer))
    print(f"world written to {args.out}")
    return 0


def run_all(args: argparse.Namespace) -> int:
    from opengenie.train.phases import train_dynamics, train_tokenizer

    out = Path(args.out)
    tokenizer_dir = out.with_name(out.name + "-tokenizer")
    resume_tok = args.resume and (tokenizer_dir / "checkpoints").exists()
    _report(train_tokenizer(_phase_args(args, str(tokenizer_dir), resume_tok)))
    resume_dyn = args.resume and (out / "checkpoints").exists()
    phase2 = _phase_args(args, str(out), resume_dyn)
    phase2.init_from = None  # --init-from seeded the tokenizer; phase 2 starts from it
    _report(train_dynamics(phase2, str(tokenizer_dir)))
    print(f"world written to {out}")
    return 0
