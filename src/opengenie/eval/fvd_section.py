"""The protocol's FVD section: real-data I3D statistics cached per exact clip set."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opengenie.eval.clips import Clip


@dataclass
class FVDOptions:
    """Where real-data I3D statistics are cached, and how I3D runs."""

    cache_dir: str | Path | None = None  # None: $XDG_CACHE_HOME/opengenie/fvd (~/.cache/...)
    device: str | torch.device = "cpu"
    batch_size: int = 8
    progress: bool = True


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "opengenie" / "fvd"


def real_stats_key(
    dataset: Any, split: str, clips: list[Clip], frames: int, stride: int = 1
) -> str:
    """What the cached real statistics describe: this dataset's contents (its dataset.json
    lists every committed shard, so appending episodes changes it), split and exact clips."""
    meta = (Path(dataset.path) / "dataset.json").read_bytes()
    key = {
        "dataset": str(Path(dataset.path).resolve()),
        "dataset_json_sha1": hashlib.sha1(meta).hexdigest(),
        "split": split,
        "frames": frames,
        "clips": [[c.episode, c.start] for c in clips],
    }
    if stride != 1:  # (absent at 1, so that caches written before frame skips still match)
        key["stride"] = stride
    return json.dumps(key, sort_keys=True)


def fvd_section(
    dataset: Any,
    split: str,
    clips: list[Clip],
    real: np.ndarray,
    generated: np.ndarray,
    options: FVDOptions,
    stride: int = 1,
) -> dict[str, Any]:
    """FVD between real and generated uint8 clips (M, T, H, W, 3): the ``fvd`` section.

    ``value`` is None, with the ``reason``, when the I3D weights are not installed.
    """
    from opengenie.eval import fvd as fvd_mod
    from opengenie.eval.i3d import load_i3d

    m = len(clips)
    try:
        model, reason = load_i3d(options.device)
    except (OSError, ValueError, pickle.UnpicklingError) as error:  # damaged weights file
        model, reason = None, f"I3D weights could not be loaded: {error}"
    if model is None:
        return {"value": None, "n": m, "reason": reason}
    key = real_stats_key(dataset, split, clips, real.shape[1], stride)
    cache_dir = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    path = cache_dir / f"real-{hashlib.sha1(key.encode()).hexdigest()[:20]}.npz"
    kw = {"batch_size": options.batch_size, "device": options.device}
    start = time.perf_counter()
    stats = fvd_mod.load_stats(path, key)
    cached = stats is not None
    if stats is None:
        stats = fvd_mod.video_stats(real, model, progress=options.progress, **kw)
        try:
            fvd_mod.save_stats(path, stats, key)
        except OSError as error:  # a read-only cache only costs time
            print(f"warning: could not cache real I3D statistics in {cache_dir}: {error}")
    real_s = time.perf_counter() - start
    start = time.perf_counter()
    value, reason = fvd_mod.compute_fvd(stats, generated, model, progress=options.progress, **kw)
    return {
        "value": value,
        "n": m,
        "reason": reason,
        "frames": int(real.shape[1]),
        "feature": fvd_mod.FEATURE_NAME,
        "real_stats": "cached" if cached else "computed",
        "real_stats_file": str(path),
        "real_s": round(real_s, 2),
        "generated_s": round(time.perf_counter() - start, 2),
    }
