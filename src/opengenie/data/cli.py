"""`opengenie data ...`: build datasets from Procgen, video files and Atari, and describe them.

Heavy imports (procgen, av, gymnasium, torch) happen inside the command functions, so building the
parser (and `opengenie --help`) stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from opengenie.errors import UserError
from opengenie.options import FPS, FRACTION, at_least

_SPLIT_HELP = "split the episodes go to"


class _Formatter(argparse.HelpFormatter):
    """Shows "(default: X)" only where there is a real default to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        hidden = action.default is None or action.default is False
        if not hidden and action.default != argparse.SUPPRESS and "%(default)" not in help_text:
            help_text += " (default: %(default)s)"
        return help_text


def _shard_bytes(args: argparse.Namespace) -> int:
    if args.shard_mb <= 0:
        raise UserError(f"--shard-mb must be positive, got {args.shard_mb}")
    return int(args.shard_mb * 2**20)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shard-mb",
        type=float,
        default=256,
        help="shard size bound in MiB; an episode never spans shards",
    )


def _interrupted(out: str) -> int:
    from opengenie.data.storage import Dataset

    if (Path(out) / "dataset.json").exists():
        kept = Dataset(out).num_episodes
        msg = f"{out} keeps {kept} complete episodes; run the same command again to add more"
    else:
        msg = f"nothing was written to {out}"
    print(f"interrupted: {msg} (nothing is left half-written)", file=sys.stderr)
    return 130


def cmd_coinrun(args: argparse.Namespace) -> int:
    from opengenie.data.coinrun import generate_procgen

    try:
        summary = generate_procgen(
            args.out,
            episodes=args.episodes,
            levels=args.levels,
            split=args.split,
            game=args.game,
            workers=args.workers,
            max_steps=args.max_steps,
            seed=args.seed,
            shard_bytes=_shard_bytes(args),
            policy=args.policy,
            hold=args.hold,
            mode=args.mode,
            expert_ties=tuple(args.expert_ties.split(",")) if args.expert_ties else None,
        )
    except KeyboardInterrupt:
        return _interrupted(args.out)
    a, b = summary["levels"]
    print(
        f"wrote {summary['episodes']} {args.game} episodes ({summary['frames']:,} frames, "
        f"levels {a}:{b}) to {args.out} split {args.split}; see `opengenie data info {args.out}`"
    )
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from opengenie.data.video import ingest_videos

    try:
        s = ingest_videos(
            args.out,
            args.paths,
            fps=args.fps,
            size=args.size,
            split=args.split,
            episode_frames=args.episode_frames,
            min_frames=args.min_frames,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            shard_bytes=_shard_bytes(args),
        )
    except KeyboardInterrupt:
        return _interrupted(args.out)
    per = ", ".join(f"{k} {v}" for k, v in s["files_per_split"].items() if v)
    print(
        f"ingested {s['ingested']} files ({per}) as {s['episodes']} episodes, "
        f"{s['frames']:,} frames, into {args.out}; skipped {len(s['skipped'])}"
    )
    return 0


def cmd_atari(args: argparse.Namespace) -> int:
    from opengenie.data.atari import atari_games, generate_atari

    if args.list_games:
        print(" ".join(atari_games()))
        return 0
    if not args.out or not args.game:
        raise UserError("opengenie data atari needs --out DIR and --game NAME (e.g. --game Pong)")
    try:
        summary = generate_atari(
            args.out,
            args.game,
            episodes=args.episodes,
            seeds=args.seeds,
            split=args.split,
            size=args.size,
            max_steps=args.max_steps,
            frameskip=args.frameskip,
            sticky=args.sticky,
            workers=args.workers,
            seed=args.seed,
            shard_bytes=_shard_bytes(args),
        )
    except KeyboardInterrupt:
        return _interrupted(args.out)
    a, b = summary["levels"]
    print(
        f"wrote {summary['episodes']} {summary['game']} episodes ({summary['frames']:,} frames, "
        f"seeds {a}:{b}) to {args.out} split {args.split}"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from opengenie.data.info import contact_sheet, describe, format_description
    from opengenie.data.storage import open_dataset

    ds = open_dataset(args.dir)
    d = describe(ds)
    if not args.no_sheet:
        sheet = Path(args.sheet) if args.sheet else ds.path / "contact_sheet.png"
        d["contact_sheet"] = str(
            contact_sheet(ds, sheet, rows=args.rows, cols=args.cols, seed=args.seed)
        )
    if args.json:
        print(json.dumps(d, indent=1))
    else:
        print(format_description(d))
        if "contact_sheet" in d:
            print(f"contact sheet {d['contact_sheet']}")
    return 0


def cmd_frame(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from opengenie.data.storage import open_dataset

    ds = open_dataset(args.dir)
    ids = ds.episode_ids(args.split)
    if len(ids) == 0:
        raise UserError(f"{args.dir} has no {args.split} episodes: pick another --split")
    if not 0 <= args.episode < len(ids):
        raise UserError(f"--episode must be in 0..{len(ids) - 1} for split {args.split}")
    frames = ds.frames(int(ids[args.episode]))  # (T, H, W, 3) uint8
    if not 0 <= args.index < len(frames):
        raise UserError(f"--index must be in 0..{len(frames) - 1} for that episode")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial.png")
    Image.fromarray(np.ascontiguousarray(frames[args.index])).save(tmp)
    tmp.replace(out)
    print(f"wrote frame {args.index} of {args.split} episode {args.episode} to {out}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `data` and its subcommands on the top-level CLI's subparsers."""
    data = subparsers.add_parser(
        "data",
        help="build datasets (Procgen, video files, Atari) and describe them",
        description="Build training data: uint8 frames in shards plus an episode index "
        "(see docs/DATA.md). Appending to an existing dataset works; splits never share levels.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="{coinrun,video,atari,info,frame}")
    sub.required = True
    fmt = _Formatter

    p = sub.add_parser(
        "coinrun",
        help="generate Procgen episodes (CoinRun or any Procgen game), Genie App. F style",
        description="By default the paper's setting: hard mode, a uniformly random policy with a "
        "fresh action every step (no action repeats), one episode per level, each run until "
        "the game ends it (Procgen caps episodes at 1000 steps). Levels are taken in order "
        "from a half-open range; default ranges per split: train 0:100000, val "
        "100000:200000, test 200000:300000 (without --levels a run continues after the "
        "split's last stored level). Stores the true actions (Procgen ids 0-14) and each "
        "episode's level seed. 64x64 frames, 15 fps.",
        formatter_class=fmt,
    )
    p.add_argument("--out", required=True, help="dataset directory (created or appended to)")
    p.add_argument("--episodes", type=int, help="episodes (= levels) to generate")
    p.add_argument("--levels", metavar="A:B", help="half-open level range; its first --episodes")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help=_SPLIT_HELP)
    p.add_argument(
        "--game", default="coinrun", help="Procgen game name, e.g. coinrun, ninja, maze, heist"
    )
    p.add_argument("--workers", type=int, default=0, help="processes; 0 = one per CPU core")
    p.add_argument("--max-steps", type=int, help="cap episode length below the game's own end")
    p.add_argument("--seed", type=int, default=0, help="random-policy seed (per level)")
    p.add_argument(
        "--policy",
        default="random",
        choices=["random", "held", "expert"],
        help="random: a fresh uniform action every frame (the paper's); held: each movement "
        "kept for 1..2*HOLD-1 frames, running right half the time (the agent travels); expert "
        "(CoinRun): a planner with the game's save states that reaches the coin on most levels, "
        "one movement per 4 frames (the expert videos of `opengenie agent`)",
    )
    p.add_argument("--hold", type=int, default=8, help="held policy: mean frames per movement")
    p.add_argument(
        "--expert-ties",
        metavar="M1,...,M6",
        help="expert policy: the order in which it prefers CoinRun's six movements where they "
        "tie, right+jump first (default right+jump,right,jump,none,left+jump,left); "
        "right+jump,left+jump,left,right,none,jump escapes by stepping back, a movement the "
        "shipped world's latent actions name (docs/AGENTS.md)",
    )
    p.add_argument(
        "--mode",
        default="hard",
        choices=["easy", "hard"],
        help="Procgen distribution mode (the paper's data: hard; its agents report both)",
    )
    _add_common(p)
    p.set_defaults(func=cmd_coinrun)

    p = sub.add_parser(
        "video",
        help="ingest video files (mp4/webm/mkv/gif/...) with PyAV",
        description="Decode with PyAV, resample to --fps, centre-crop to square, resize to "
        "--size, cut long videos into near-equal episodes of at most --episode-frames. Each file "
        "goes whole to one split: a stable hash of its bytes picks it unless --split is given. "
        "Unreadable files are reported by name and skipped; the exit code is 0 when at least "
        "one file was ingested. Files already in the dataset (same bytes) are skipped.",
        formatter_class=fmt,
    )
    p.add_argument("paths", nargs="+", help="video files and/or directories (searched recursively)")
    p.add_argument("--out", required=True, help="dataset directory (created or appended to)")
    p.add_argument(
        "--fps", type=FPS.arg("--fps"), default=10.0, help="frames per second to resample to"
    )
    p.add_argument(
        "--size", type=at_least(1).arg("--size"), default=64, help="output frames are size x size"
    )
    p.add_argument("--split", choices=["train", "val", "test"], help="put every file in this split")
    p.add_argument(
        "--episode-frames",
        type=at_least(1).arg("--episode-frames"),
        default=1000,
        help="longest episode, in frames",
    )
    p.add_argument(
        "--min-frames",
        type=at_least(1).arg("--min-frames"),
        default=16,
        help="skip files shorter than this",
    )
    p.add_argument(
        "--val-fraction",
        type=FRACTION.arg("--val-fraction"),
        default=0.05,
        help="share of files for val",
    )
    p.add_argument(
        "--test-fraction",
        type=FRACTION.arg("--test-fraction"),
        default=0.05,
        help="share of files for test",
    )
    _add_common(p)
    p.set_defaults(func=cmd_video)

    p = sub.add_parser(
        "atari",
        help="generate Atari episodes with gymnasium + ale-py",
        description="Random policy over the game's minimal action set, one episode per seed "
        "(seed ranges per split as Procgen's levels), frames resized to --size, actions stored. "
        "Sticky actions off by default so stored actions are the executed ones. "
        "fps = 60 / --frameskip. Needs `pip install 'opengenie[atari]'`.",
        formatter_class=fmt,
    )
    p.add_argument("--out", help="dataset directory (created or appended to)")
    p.add_argument("--game", help="gymnasium ALE game name, e.g. Pong, Breakout, MsPacman")
    p.add_argument("--episodes", type=int, help="episodes (= seeds) to generate")
    p.add_argument("--seeds", metavar="A:B", help="half-open range of environment seeds")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help=_SPLIT_HELP)
    p.add_argument("--size", type=int, default=64, help="output frames are size x size")
    p.add_argument("--max-steps", type=int, default=1000, help="cap on episode length (steps)")
    p.add_argument("--frameskip", type=int, default=4, help="emulator frames per step")
    p.add_argument("--sticky", type=float, default=0.0, help="sticky-action probability")
    p.add_argument("--workers", type=int, default=0, help="processes; 0 = one per CPU core")
    p.add_argument("--seed", type=int, default=0, help="random-policy seed (per episode)")
    p.add_argument("--list-games", action="store_true", help="print the game names and exit")
    _add_common(p)
    p.set_defaults(func=cmd_atari)

    p = sub.add_parser(
        "info",
        help="describe a dataset and write a contact sheet of sample frames",
        description="Counts, frames, hours at the dataset's fps, splits, level ranges, disk use, "
        "and a contact-sheet PNG (one random episode per row, frames spread across it).",
        formatter_class=fmt,
    )
    p.add_argument("dir", help="dataset directory")
    p.add_argument("--sheet", help="PNG path (default: DIR/contact_sheet.png)")
    p.add_argument("--no-sheet", action="store_true", help="do not write the contact sheet")
    p.add_argument("--rows", type=int, default=6, help="episodes in the contact sheet")
    p.add_argument("--cols", type=int, default=8, help="frames per episode in the contact sheet")
    p.add_argument("--seed", type=int, default=0, help="which episodes the sheet shows")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "frame",
        help="save one frame of a dataset as a PNG (e.g. a prompt for generate/play)",
        formatter_class=fmt,
    )
    p.add_argument("dir", help="dataset directory")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split")
    p.add_argument("--episode", type=int, default=0, help="episode number within the split")
    p.add_argument("--index", type=int, default=0, help="frame number within the episode")
    p.set_defaults(func=cmd_frame)


def main(argv: list[str] | None = None) -> int:
    """`python -m opengenie.data ...`: the `data` command on its own (same as `opengenie data`)."""
    parser = argparse.ArgumentParser(prog="python -m opengenie.data")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
