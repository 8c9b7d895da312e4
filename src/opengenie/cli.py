"""`opengenie` command line: data, train, eval, generate, play, bench, agent."""

from __future__ import annotations

import argparse
import sys

from opengenie import __version__
from opengenie.errors import UserError

DESCRIPTION = """Genie in PyTorch: learn a playable world from unlabelled gameplay video.

  opengenie data coinrun --out data/coinrun --episodes 200     # gameplay video in
  opengenie train all --preset tiny --data data/coinrun --out worlds/tiny
  opengenie generate --world worlds/tiny --prompt frame.png --actions random --out clip.gif
  opengenie bench models                                         # speed of each preset
  opengenie agent eval                                           # an agent plays CoinRun
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opengenie",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"opengenie {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    from opengenie.agent.cli import add_parser as add_agent
    from opengenie.bench import add_parser as add_bench
    from opengenie.data.cli import add_parser as add_data
    from opengenie.eval.cli import add_parser as add_eval
    from opengenie.generate import add_parser as add_generate
    from opengenie.play.cli import add_parser as add_play
    from opengenie.train.cli import add_parser as add_train

    for add in (add_data, add_train, add_eval, add_generate, add_play, add_bench, add_agent):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        # Inside the try: the numeric options' types (opengenie.options) raise UserError.
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if args.command is None else 2
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"opengenie: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("opengenie: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
