"""One rule set for numeric settings: the CLI's options and the play page's settings.

A `Number` says what a setting may be (an integer or a finite number, and its range). The CLI
uses `rule.arg("--steps")` as an argparse ``type=``: a bad value raises `UserError`, which the
CLI prints as one line ``opengenie: error: --steps must be ...``. The play page checks the
values a tab sends with `rule.check(value, "steps")`. So `--temperature nan` and a page's
``{"temperature": NaN}`` are refused by the same rule.

`check_video` bounds what `generate` writes (frames x side x side), so a large --scale or
--frames is refused up front instead of running out of memory while writing the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from opengenie.config import CONTEXT_MASK_MAX
from opengenie.errors import UserError


@dataclass(frozen=True)
class Number:
    """An integer (`integer=True`) or a finite float, in low..high (either end may be None).
    `above_low`: low itself is excluded (for floats that must be > 0)."""

    integer: bool
    low: float | None = None
    high: float | None = None
    above_low: bool = False

    def describe(self) -> str:
        what = "an integer" if self.integer else "a finite number"
        low, high = _fmt(self.low), _fmt(self.high)
        if self.low is not None and self.high is not None and not self.above_low:
            return f"{what} in {low}..{high}"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.above_low else '>='} {low}")
        if self.high is not None:
            bounds.append(f"<= {high}")
        return f"{what} {' and '.join(bounds)}".rstrip()

    def check(self, value: object, name: str) -> int | float:
        """A value that is already a number (a JSON field, a default) -> it, or UserError."""
        ok = isinstance(value, int) or (not self.integer and isinstance(value, float))
        if not ok or isinstance(value, bool) or not self._in_range(value):
            raise UserError(f"{name} must be {self.describe()} (got {_shown(value)})")
        return int(value) if self.integer else float(value)

    def parse(self, text: str, name: str) -> int | float:
        """Command-line text -> the number, or UserError naming the option."""
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            value = None
        if value is None or not self._in_range(value):
            raise UserError(f"{name} must be {self.describe()} (got {_shown(text)})")
        return value

    def arg(self, name: str) -> Callable[[str], int | float]:
        """An argparse ``type=`` for option `name`."""

        def parse(text: str) -> int | float:
            return self.parse(text, name)

        parse.__name__ = "integer" if self.integer else "number"
        return parse

    def list_arg(self, name: str) -> Callable[[str], list]:
        """An argparse ``type=`` for a comma-separated list ('' is the empty list)."""

        def parse(text: str) -> list:
            return [self.parse(v.strip(), name) for v in text.split(",") if v.strip()]

        parse.__name__ = "list"
        return parse

    def _in_range(self, value: int | float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):  # (ints may be huge)
            return False
        if self.low is not None and (value <= self.low if self.above_low else value < self.low):
            return False
        return self.high is None or value <= self.high


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _fmt(bound: float | None) -> str:
    return "" if bound is None else f"{bound:g}" if isinstance(bound, float) else str(bound)


def at_least(low: int) -> Number:
    """An integer >= low (counts: clips, batch size, threads, ...)."""
    return Number(integer=True, low=low)


# Sampling: the same limits for `generate`, `play` (flags and the page's settings) and `eval`.
STEPS = Number(integer=True, low=1, high=100)  # MaskGIT steps per frame; more is only slower
TEMPERATURE = Number(integer=False, low=0.01, high=10.0)
GUIDANCE = Number(integer=False, low=0.0, high=10.0)  # action guidance weight (0: none)
CONTEXT_MASK = Number(integer=False, low=0.0, high=CONTEXT_MASK_MAX)  # share of context hidden
MIN_P = Number(integer=False, low=0.0, high=1.0)  # min-p truncation (0: none; 1: greedy)
SEED = Number(integer=True, low=0, high=2**63 - 1)
PORT = Number(integer=True, low=0, high=65535)
UPLOAD_MB = Number(integer=False, low=0.0, high=1024.0, above_low=True)

# What `generate` writes: each frame upscaled to (size*scale)^2 pixels, all held in memory while
# the file is written (about 7 bytes a pixel for a GIF), so bound the side and the total.
FPS = Number(integer=False, low=0.0, high=1000.0, above_low=True)  # data video --fps
FRACTION = Number(integer=False, low=0.0, high=1.0)  # shares of files (--val-fraction, ...)
MAX_FRAMES = 10_000
FRAMES = Number(integer=True, low=1, high=MAX_FRAMES)
SCALE = Number(integer=True, low=1, high=64)
MAX_VIDEO_SIDE = 4096  # pixels
MAX_VIDEO_PIXELS = 2**27  # frames x side x side: ~1 GiB of memory while writing a GIF


def check_video(frames: int, size: int, scale: int) -> None:
    """Refuse a video of `frames` frames of (size*scale)^2 pixels that would be too large."""
    side = size * scale
    if side > MAX_VIDEO_SIDE:
        raise UserError(
            f"--scale {scale} makes {side}x{side} frames; the most is {MAX_VIDEO_SIDE} pixels a "
            f"side (--scale {max(1, MAX_VIDEO_SIDE // size)} for this {size}-pixel world)"
        )
    if frames * side * side > MAX_VIDEO_PIXELS:
        most = max(1, MAX_VIDEO_PIXELS // (side * side))
        raise UserError(
            f"{frames} frames of {side}x{side} pixels is too large a video (the most at this "
            f"--scale is {most} frames): use fewer --frames/--actions or a smaller --scale"
        )
