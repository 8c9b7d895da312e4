"""Shared machinery for sources we can run (Procgen, Atari): level ranges per split, and a parallel
generator that writes episodes in level order with a progress bar."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from opengenie.data.storage import SPLITS, Dataset, DatasetWriter
from opengenie.errors import UserError

# Half-open default level ranges keep the splits disjoint (issue 3): evaluation levels are unseen.
DEFAULT_LEVEL_RANGES: dict[str, tuple[int, int]] = {
    "train": (0, 100_000),
    "val": (100_000, 200_000),
    "test": (200_000, 300_000),
}


def parse_range(text: str, what: str = "--levels") -> tuple[int, int]:
    """Parse ``"A:B"`` into a half-open range with 0 <= A < B."""
    try:
        a_s, b_s = text.split(":")
        a, b = int(a_s), int(b_s)
    except ValueError:
        raise UserError(
            f"{what} must look like A:B (half-open, e.g. 0:200), got {text!r}"
        ) from None
    if not 0 <= a < b:
        raise UserError(f"{what} {text} is empty or negative; need 0 <= A < B")
    return a, b


def resolve_levels(
    existing: Dataset | None,
    source: str,
    split: str,
    episodes: int | None,
    levels: str | None,
    what: str = "--levels",
) -> range:
    """The levels to generate: the first ``episodes`` of ``levels``, or, without ``levels``, the
    next unused ones of the split's default range. Rejects levels another split of this dataset uses
    (for the same source) and levels this split already has."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if episodes is not None and episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {episodes}")
    noun = what.lstrip("-")  # "levels" (Procgen) or "seeds" (Atari)
    used = existing.levels(split, source) if existing is not None else np.zeros(0, np.int64)
    if levels is None:
        if episodes is None:
            raise UserError(f"say how many episodes: --episodes N (or {what} A:B)")
        lo, hi = DEFAULT_LEVEL_RANGES[split]
        ours = used[(used >= lo) & (used < hi)]
        a = int(ours.max()) + 1 if ours.size else lo  # continue where the last run stopped
        b = a + episodes
        if b > hi:
            raise UserError(
                f"split {split}'s default {noun} {lo}:{hi} have only {hi - a} unused left after "
                f"{a}; ask for fewer episodes or pass {what} A:B"
            )
    else:
        a, b = parse_range(levels, what)
        if episodes is not None:
            if episodes > b - a:
                raise UserError(
                    f"--episodes {episodes} is more than the {b - a} {noun} in {what} {levels}; "
                    "widen the range or ask for fewer"
                )
            b = a + episodes
    if existing is not None:
        for other in SPLITS:
            lv = existing.levels(other, source)
            if other == split:
                clash = lv[(lv >= a) & (lv < b)]
                if clash.size:
                    raise UserError(
                        f"{noun} {a}:{b} include {clash.size} already in split {split} of "
                        f"{existing.path} (e.g. {int(clash.min())}); leave out {what} to continue "
                        f"after {int(lv.max())}, or pick new {noun}"
                    )
            elif lv.size and a <= lv.max() and lv.min() < b:
                raise UserError(
                    f"{noun} {a}:{b} for split {split} overlap split {other}'s {noun} "
                    f"{int(lv.min())}:{int(lv.max()) + 1} in {existing.path}; splits must not "
                    f"share {noun}: pick {what} outside that range"
                )
    return range(a, b)


def _ignore_sigint() -> None:
    # Ctrl-C is handled once, in the parent (it publishes whole episodes and stops the pool).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _imap(
    fn: Callable[[Any], Any], tasks: list[Any], workers: int
) -> tuple[Iterator[Any], Callable[[], None]]:
    """Ordered map over worker processes (in-process when workers == 1); returns (results, stop)."""
    if workers <= 1 or len(tasks) <= 1:
        return map(fn, tasks), lambda: None
    # spawn, not fork: the parent may hold torch/OpenMP threads, which fork can deadlock.
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(min(workers, len(tasks)), initializer=_ignore_sigint)
    return pool.imap(fn, tasks, chunksize=1), pool.terminate


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 16))


def generate_episodes(
    writer: DatasetWriter,
    fn: Callable[[Any], dict[str, Any]],
    tasks: list[Any],
    split: str,
    workers: int,
    desc: str,
) -> None:
    """Run ``fn`` on every task (a level) in parallel and add the episodes in task order, so the
    dataset is the same for any number of workers. ``fn`` returns a dict with ``frames``,
    ``actions``, ``source``, ``level_seed``. Whole episodes are published as shards fill, so an
    interrupted run keeps a consistent prefix (run again without ``--levels`` to continue)."""
    from tqdm import tqdm

    results, stop = _imap(fn, tasks, workers)
    bar = tqdm(total=len(tasks), desc=desc, unit="ep", file=sys.stderr, dynamic_ncols=True)
    try:
        for ep in results:
            writer.add_episode(
                ep["frames"],
                ep["actions"],
                source=ep["source"],
                level_seed=ep["level_seed"],
                split=split,
            )
            writer.checkpoint()
            bar.update(1)
            bar.set_postfix(frames=writer.frames_added, refresh=False)
    finally:
        stop()
        bar.close()
