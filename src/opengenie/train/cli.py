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
    p.add_argument("--steps", type=int, help="total steps to reach (default: the preset's)")
    p.add_argument("--minutes", type=float, help="wall-clock budget per phase")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field"
    )


def add_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train the tokenizer, then LAM + dynamics")
    phases = train.add_subparsers(dest="phase", metavar="PHASE", required=True)
    tok = phases.add_parser("tokenizer", help="phase 1: the video tokenizer")
    _common(tok)
    tok.add_argument("--out", required=True, help="tokenizer run directory")
    tok.set_defaults(func=run_tokenizer)
    dyn = phases.add_parser("dynamics", help="phase 2: LAM + dynamics on a trained tokenizer")
    _common(dyn)
    dyn.add_argument("--tokenizer", required=True, help="tokenizer run from phase 1")
    dyn.add_argument("--out", required=True, help="World directory to write")
    dyn.set_defaults(func=run_dynamics)
    both = phases.add_parser("all", help="both phases; --out is the World directory")
    _common(both)
    both.add_argument("--out", required=True, help="World directory (tokenizer run beside it)")
    both.set_defaults(func=run_all)


def _options(args: argparse.Namespace):
    from opengenie.train.loop import RunOptions

    if args.steps is not None and args.steps < 1:
        raise UserError("--steps must be >= 1")
    return RunOptions(
        steps=args.steps,
        minutes=args.minutes,
        device=args.device,
        bf16=args.bf16,
        save_every=args.save_every,
        seed=args.seed,
    )


def run_tokenizer(args: argparse.Namespace) -> int:
    from opengenie.train.phases import train_tokenizer

    summary = train_tokenizer(
        preset(args.preset, args.set), args.data, args.out, _options(args), args.resume
    )
    print(json.dumps(summary))
    return 0


def run_dynamics(args: argparse.Namespace) -> int:
    from opengenie.train.phases import train_dynamics

    summary = train_dynamics(
        preset(args.preset, args.set),
        args.data,
        args.tokenizer,
        args.out,
        _options(args),
        args.resume,
    )
    print(json.dumps(summary))
    return 0


def run_all(args: argparse.Namespace) -> int:
    from opengenie.train.phases import train_dynamics, train_tokenizer

    out = Path(args.out)
    tokenizer_dir = out.with_name(out.name + "-tokenizer")
    config, opts = preset(args.preset, args.set), _options(args)
    resume_tok = args.resume and (tokenizer_dir / "config.json").exists()
    print(json.dumps(train_tokenizer(config, args.data, str(tokenizer_dir), opts, resume_tok)))
    resume_dyn = args.resume and (out / "config.json").exists()
    print(
        json.dumps(
            train_dynamics(config, args.data, str(tokenizer_dir), str(out), opts, resume_dyn)
        )
    )
    print(f"world written to {out}")
    return 0
