"""Random T-frame windows from a dataset, for training.

Each batch is drawn from its own RNG seeded by (seed, rank, batch number), so the stream is a pure
function of those numbers: it is deterministic, and the whole loader state is one counter (exact
resume from a plain JSON dict). Windows are drawn uniformly over all valid window starts of this
rank's episodes, so a window never crosses an episode boundary.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
import torch

from opengenie.data.storage import SPLITS, Dataset
from opengenie.errors import UserError

STATE_VERSION = 1


def partition_episodes(lengths: np.ndarray, span: int, world_size: int) -> np.ndarray:
    """Assign episodes (in storage order) to ranks as contiguous runs with ~equal window counts.

    Contiguous runs in storage order mean each rank touches its own shards (only the shards at run
    boundaries are shared), which keeps page cache and file handles per rank small at scale.
    Returns int64 (N,): the rank of each episode, -1 for episodes shorter than ``span``.
    """
    windows = np.maximum(lengths - span + 1, 0)  # (N,) valid window starts per episode
    owner = np.full(lengths.shape, -1, dtype=np.int64)
    usable = np.flatnonzero(windows > 0)
    if usable.size == 0:
        return owner
    w = windows[usable].astype(np.float64)
    mid = (np.cumsum(w) - w / 2) / w.sum()  # (U,) centre of each episode's share in [0, 1)
    owner[usable] = np.minimum((mid * world_size).astype(np.int64), world_size - 1)
    # With fewer than world_size big episodes a rank could be left empty: fall back to round-robin.
    if usable.size >= world_size and np.unique(owner[usable]).size < world_size:
        owner[usable] = np.arange(usable.size) % world_size
    return owner


def clip_span(frames: int, stride: int) -> int:
    """Source frames that a clip of ``frames`` frames covers, taking one every ``stride``."""
    return (frames - 1) * stride + 1


class ClipLoader:
    """Infinite iterator of clip batches from one split.

    ``next(loader)`` returns a dict of torch tensors:

    - ``frames``: uint8 (B, T, H, W, 3) (conversion to float belongs in the training step)
    - ``actions``: int64 (B, T-1), the true action between frame t and t+1; -1 where unknown
      (no actions in the source, or with ``frame_skip`` > 1 when the skipped steps' actions differ)
    - ``episode``: int64 (B,) episode ids; ``start``: int64 (B,) first frame within the episode

    DDP: every rank builds the loader with its ``rank``/``world_size``; ranks read disjoint sets of
    episodes (contiguous runs in storage order, i.e. mostly disjoint shards). The same scheme splits
    work across loader processes: use ``rank = rank * workers + worker``, ``world_size *= workers``.
    All ranks advance in lockstep, so rank 0's ``state_dict()`` resumes every rank exactly.
    """

    def __init__(
        self,
        dataset: Dataset,
        split: str | None = "train",
        clip_frames: int = 16,
        batch_size: int = 8,
        frame_skip: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if split is not None and split not in SPLITS:
            raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if clip_frames < 1:
            raise UserError(f"clip_frames must be >= 1, got {clip_frames}")
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        if frame_skip < 1:
            raise UserError(f"frame_skip must be >= 1, got {frame_skip}")
        if seed < 0:
            raise UserError(f"the loader seed must be >= 0, got {seed}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise UserError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        self.dataset = dataset
        self.split = split
        self.clip_frames = int(clip_frames)
        self.batch_size = int(batch_size)
        self.frame_skip = int(frame_skip)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.span = clip_span(self.clip_frames, self.frame_skip)  # frames one window covers
        self.batches = 0  # batches produced so far: the whole resumable state

        ids = dataset.episode_ids(split)
        where = f"split {split!r}" if split is not None else "the dataset"
        if ids.size == 0:
            raise UserError(
                f"{dataset.path} has no episodes in {where}; add some with "
                f"`opengenie data ... --split {split}`"
            )
        lengths = dataset.ep_length[ids]
        if lengths.max() < self.span:
            raise UserError(
                f"a window of {self.clip_frames} frames with frame skip {self.frame_skip} spans "
                f"{self.span} frames, longer than every episode in {where} (longest "
                f"{int(lengths.max())}); use fewer clip frames, a smaller frame skip, "
                "or longer episodes"
            )
        owner = partition_episodes(lengths, self.span, self.world_size)
        mine = owner == self.rank
        # Checked for all ranks, not just this one: every rank must fail alike or DDP would hang.
        if np.unique(owner[owner >= 0]).size < self.world_size:
            raise UserError(
                f"{where} has {int((owner >= 0).sum())} episodes long enough for a "
                f"{self.span}-frame window, fewer than the {self.world_size} ranks; "
                "use fewer ranks or more data"
            )
        self.episode_ids = ids[mine]  # (E,) this rank's episodes
        windows = lengths[mine] - self.span + 1  # (E,)
        self._cum = np.cumsum(windows)  # (E,) windows up to and including each episode
        self._before = self._cum - windows  # (E,) windows before each episode
        self.num_windows = int(self._cum[-1])

    def __iter__(self) -> ClipLoader:
        return self

    def sample_windows(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Episode ids and start frames (each int64 (B,)) of batch number ``batch``."""
        rng = np.random.default_rng([self.seed, self.rank, batch])
        u = rng.integers(0, self.num_windows, size=self.batch_size)  # (B,) global window index
        k = np.searchsorted(self._cum, u, side="right")  # (B,) which of this rank's episodes
        start = u - self._before[k]  # (B,) start frame within the episode
        return self.episode_ids[k], start

    def __next__(self) -> dict[str, torch.Tensor]:
        ep, start = self.sample_windows(self.batches)
        self.batches += 1
        ds, t, k = self.dataset, self.clip_frames, self.frame_skip
        h, w = ds.frame_size
        frames = np.empty((self.batch_size, t, h, w, 3), dtype=np.uint8)  # (B, T, H, W, 3)
        actions = np.full((self.batch_size, max(t - 1, 0)), -1, dtype=np.int64)  # (B, T-1)
        for b in range(self.batch_size):
            e, s = int(ep[b]), int(start[b])
            frames[b] = ds.frames(e)[s : s + self.span : k]
            if t > 1 and ds.ep_has_actions[e]:
                a = ds.actions(e)[s : s + self.span - 1]  # (span-1,) actions inside the window
                if k == 1:
                    actions[b] = a
                else:  # one known action per step only if the k underlying actions agree
                    a = a.reshape(t - 1, k)
                    actions[b] = np.where((a == a[:, :1]).all(axis=1), a[:, 0], -1)
        return {
            "frames": torch.from_numpy(frames),
            "actions": torch.from_numpy(actions),
            "episode": torch.from_numpy(ep.astype(np.int64)),
            "start": torch.from_numpy(start.astype(np.int64)),
        }

    def close(self) -> None:
        """Nothing to release (the dataset owns the memory maps); PrefetchLoader stops a thread."""

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state; ``load_state_dict`` of it continues with the very next batch."""
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "batches": self.batches,
            "split": self.split,
            "clip_frames": self.clip_frames,
            "batch_size": self.batch_size,
            "frame_skip": self.frame_skip,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise UserError(f"loader state version {state.get('version')} is not {STATE_VERSION}")
        for key in ("split", "clip_frames", "batch_size", "frame_skip", "world_size"):
            if state[key] != getattr(self, key):
                raise UserError(
                    f"the checkpoint's data loader used {key}={state[key]!r}, this run "
                    f"{getattr(self, key)!r}; resume with the same data settings"
                )
        self.seed = int(state["seed"])
        self.batches = int(state["batches"])


class PrefetchLoader:
    """Reads the next batch in a background thread while the current one trains.

    Batches are a pure function of the batch number, so this changes no batch and no resume
    state, only when reads happen: pages not yet in the page cache (a dataset larger than RAM,
    or a fresh machine) are read from disk during the training step rather than before it
    (torch releases the GIL in its kernels, so the two run side by side). A failed read is
    raised by the ``next()`` that asks for its batch, never by ``state_dict`` or ``close``, so
    that a training loop can still save where it got to.
    """

    def __init__(self, loader: ClipLoader) -> None:
        self.loader = loader
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opengenie-prefetch")
        self._ahead: Future[dict[str, torch.Tensor]] | None = None  # the next batch, if asked
        self._returned = loader.batches  # batches handed out: the resumable position

    def __iter__(self) -> PrefetchLoader:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        ahead, self._ahead = self._ahead, None
        batch = ahead.result() if ahead is not None else next(self.loader)
        self._returned += 1
        self._ahead = self._pool.submit(next, self.loader)
        return batch

    def _settle(self) -> None:
        """Wait for the read in flight (its error, if any, stays with it)."""
        if self._ahead is not None:
            wait([self._ahead])

    def state_dict(self) -> dict[str, Any]:
        # The counter of the wrapped loader may be one ahead (or moving): report our own.
        return {**self.loader.state_dict(), "batches": self._returned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._settle()
        self._ahead = None
        self.loader.load_state_dict(state)
        self._returned = self.loader.batches

    def close(self) -> None:
        """Stop the reader thread (waiting for a read in flight)."""
        self._settle()
        self._ahead = None
        self._pool.shutdown(wait=True)
