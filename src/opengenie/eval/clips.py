"""Which clips the protocol scores, their frames and their true actions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from opengenie.data.loader import clip_span


@dataclass(frozen=True)
class Clip:
    """A window of frames [start, start + frames) of one episode."""

    episode: int
    start: int


def select_clips(
    lengths: np.ndarray, episode_ids: np.ndarray, n: int, frames: int, seed: int
) -> list[Clip]:
    """N clips of ``frames`` frames, one per episode where possible (seeded).

    With at least N long-enough episodes, N of them are drawn without replacement and each gives
    one clip at a random start. With fewer, every episode gives one and the rest are spread
    round-robin (in a random order) over episodes with room for another non-overlapping window;
    an episode with k clips is cut into k equal segments, one clip at a random start in each.
    Returns at most N clips (fewer when the split has no room for more), sorted.
    """
    rng = np.random.default_rng(seed)
    ok = lengths >= frames
    eps, lens = episode_ids[ok], lengths[ok]
    if eps.size == 0:
        return []
    if n <= eps.size:
        pick = np.sort(rng.choice(eps.size, size=n, replace=False))
        counts = np.zeros(eps.size, dtype=np.int64)
        counts[pick] = 1
    else:
        counts = np.ones(eps.size, dtype=np.int64)
        capacity = lens // frames  # non-overlapping windows per episode
        left = n - eps.size
        order = rng.permutation(eps.size)
        while left > 0:
            grew = False
            for i in order:
                if left > 0 and counts[i] < capacity[i]:
                    counts[i] += 1
                    left -= 1
                    grew = True
            if not grew:
                break
    clips: list[Clip] = []
    for ep, length, k in zip(eps, lens, counts, strict=True):
        seg = int(length) // max(int(k), 1)
        for j in range(int(k)):
            start = j * seg + int(rng.integers(0, seg - frames + 1))
            clips.append(Clip(int(ep), start))
    return sorted(clips, key=lambda c: (c.episode, c.start))


def load_clips(dataset: Any, clips: list[Clip], frames: int, stride: int = 1) -> np.ndarray:
    """uint8 (N, frames, H, W, 3) from a ``Dataset``: every ``stride``-th frame from each start
    (a world with a frame skip steps ``stride`` game frames at a time)."""
    span = clip_span(frames, stride)
    return np.stack(
        [np.asarray(dataset.frames(c.episode)[c.start : c.start + span : stride]) for c in clips]
    )


def true_action_labels(
    dataset: Any, clips: list[Clip], frames: int, stride: int = 1
) -> tuple[np.ndarray, list[str]]:
    """Grouped true actions of each transition: labels int64 (N, frames-1), -1 unknown, and the
    group names the labels index. With a ``stride`` k, a transition's label is known only
    where its k game actions have the same label.

    CoinRun's 15 Procgen ids collapse to its 6 movements (``coinrun_action_group``); in other
    sources ids are grouped by their stored action names, so ids with the same name (e.g. two
    no-ops) count as one; a source without names keeps its raw ids ("action 3").
    """
    from opengenie.data.coinrun import COINRUN_GROUP_NAMES, coinrun_action_group

    names: list[str] = []
    index: dict[str, int] = {}

    def label_of(name: str) -> int:
        if name not in index:
            index[name] = len(names)
            names.append(name)
        return index[name]

    labels = np.full((len(clips), frames - 1), -1, dtype=np.int64)
    for row, clip in enumerate(clips):
        episode = dataset.episode(clip.episode)
        if not episode.has_actions:
            continue
        # a[t] is taken after frame t: transition t -> t+1 of the clip is a[start + t].
        raw = dataset.actions(clip.episode)[
            clip.start : clip.start + clip_span(frames, stride) - 1
        ]  # (k * (frames-1),)
        if episode.source.startswith("procgen:coinrun"):
            groups = coinrun_action_group(raw)
            text = [COINRUN_GROUP_NAMES[g] if g >= 0 else None for g in groups]
        else:
            info = dataset.source_info.get(episode.source, {})
            action_names = list(info.get("action_names") or [])
            text = [
                None
                if a < 0
                else (action_names[a] if a < len(action_names) else f"action {int(a)}")
                for a in raw
            ]
        ids = np.array([-1 if s is None else label_of(str(s)) for s in text], dtype=np.int64)
        steps = ids.reshape(frames - 1, stride)  # (frames-1, k): one row per world step
        agree = (steps == steps[:, :1]).all(axis=1)
        labels[row] = np.where(agree, steps[:, 0], -1)
    return labels, names


def to_float(frames: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 frames (..., H, W, 3) -> float in [0, 1] on ``device``."""
    return torch.as_tensor(np.asarray(frames)).to(device).float().div_(255.0)


def batches(n: int, size: int) -> Iterator[tuple[int, slice]]:
    """(batch index, slice) over n items in batches of ``size``."""
    for i, start in enumerate(range(0, n, size)):
        yield i, slice(start, min(start + size, n))
