"""`opengenie eval` (issue 5): registered here; not built yet."""

from __future__ import annotations

import argparse

from opengenie.errors import UserError


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("eval", help="the paper's metrics and a report (issue 5)")
    p.set_defaults(func=_not_yet)


def _not_yet(_args: argparse.Namespace) -> int:
    raise UserError("`opengenie eval` is not built yet (tracked in issue 5)")
