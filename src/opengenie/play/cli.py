"""`opengenie play` (issue 6): registered here; not built yet."""

from __future__ import annotations

import argparse

from opengenie.errors import UserError


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("play", help="play a world in the browser (issue 6)")
    p.set_defaults(func=_not_yet)


def _not_yet(_args: argparse.Namespace) -> int:
    raise UserError("`opengenie play` is not built yet (tracked in issue 6)")
