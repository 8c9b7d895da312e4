"""Benchmark: ClipLoader throughput and disk use per million frames; writes JSON.

    python bench/data_loader.py                       # synthetic 64x64 dataset in a temp dir
    python bench/data_loader.py --data /tmp/data/coinrun
    python bench/data_loader.py --data data/coinrun --batch-size 32 --clip-frames 4 --step-ms 250

Target: the tiny preset trains on batch 8 x 16 frames at <= 4 steps/s, i.e. <= 32 clips/s; the
loader must deliver >= 10x that (320 clips/s) on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from opengenie.atomic import atomic_write_json
from opengenie.data import ClipLoader, DatasetWriter, PrefetchLoader, open_dataset
from opengenie.data.storage import Dataset

TRAINING_CLIPS_PER_S = 32.0  # tiny preset: 8 clips x <= 4 steps/s


def evict_from_page_cache(ds: Dataset) -> bool:
    """Ask the kernel to drop the shards' cached pages (per file, harmless to other processes)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for name in ds.shards:
        for ext in (".frames", ".actions"):
            fd = os.open(ds.path / "shards" / f"{name}{ext}", os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return True


def overlap_with_compute(ds: Dataset, args: argparse.Namespace) -> dict:
    """Cold batches, each followed by ~step_ms of torch compute: plain loader vs PrefetchLoader.

    Each timing starts from an evicted page cache and a fresh seed, and the two loaders
    alternate, so that both meet the same disk and the same machine load.
    """
    import torch

    a = torch.randn(512, 512)
    for _ in range(20):  # warm-up: thread pool, caches
        a @ a
    t0 = time.perf_counter()
    for _ in range(100):
        a @ a
    per_matmul = (time.perf_counter() - t0) / 100
    matmuls = max(1, round(args.step_ms / 1000 / per_matmul))

    def step() -> None:
        for _ in range(matmuls):
            a @ a

    times: dict[str, list[float]] = {"plain": [], "prefetch": []}
    for rnd in range(2):
        for kind in ("plain", "prefetch"):
            seed = 100 + 2 * rnd + (kind == "plain")  # fresh windows each time
            loader = ClipLoader(ds, split=args.split, clip_frames=args.clip_frames,
                                batch_size=args.batch_size, seed=seed)  # fmt: skip
            if kind == "prefetch":
                loader = PrefetchLoader(loader)
            evict_from_page_cache(ds)
            t0 = time.perf_counter()
            for _ in range(args.step_batches):
                next(loader)
                step()
            times[kind].append(time.perf_counter() - t0)
            if kind == "prefetch":
                loader.close()
    t0 = time.perf_counter()
    for _ in range(args.step_batches):
        step()
    compute_s = time.perf_counter() - t0
    plain, prefetch = min(times["plain"]), min(times["prefetch"])
    return {
        "step_ms": args.step_ms,
        "batches": args.step_batches,
        "compute_only_s": compute_s,
        "plain_s": times["plain"],
        "prefetch_s": times["prefetch"],
        "speedup": plain / prefetch,
        "read_stall_plain_s": plain - compute_s,
        "read_stall_prefetch_s": prefetch - compute_s,
    }


def make_dataset(path: Path, episodes: int, length: int, size: int) -> None:
    rng = np.random.default_rng(0)
    with DatasetWriter(path, fps=15, size=size) as w:
        for i in range(episodes):
            # Random bytes: incompressible and page-aligned-agnostic, a fair worst case for reads.
            frames = rng.integers(0, 256, size=(length, size, size, 3), dtype=np.uint8)
            w.add_episode(frames, rng.integers(15, size=length), source="bench", level_seed=i)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", help="existing dataset dir (default: build a synthetic one)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--episodes", type=int, default=64, help="synthetic episodes")
    ap.add_argument("--length", type=int, default=1000, help="synthetic episode length")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--clip-frames", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5.0, help="time to measure (warm)")
    ap.add_argument("--cold-batches", type=int, default=200, help="batches measured cold")
    ap.add_argument(
        "--step-ms",
        type=float,
        default=0.0,
        help="also time cold batches each followed by this much torch compute (a stand-in for "
        "a training step), read plainly and with PrefetchLoader, alternating; 0: skip",
    )
    ap.add_argument("--step-batches", type=int, default=40, help="batches per overlap timing")
    ap.add_argument("--out", default="bench/results/data_loader.json")
    args = ap.parse_args()

    tmp = None
    if args.data:
        path = Path(args.data)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="opengenie-bench-"))
        path = tmp / "ds"
        t0 = time.perf_counter()
        make_dataset(path, args.episodes, args.length, args.size)
        write_s = time.perf_counter() - t0
    try:
        ds = open_dataset(path)
        # Cold: shards evicted from the page cache first, so reads hit the disk (a dataset much
        # larger than RAM behaves like this); warm: everything cached (this dataset fits in RAM).
        cold = ClipLoader(ds, split=args.split, clip_frames=args.clip_frames,
                          batch_size=args.batch_size, seed=1)  # fmt: skip
        evicted = evict_from_page_cache(ds)
        t0 = time.perf_counter()
        for _ in range(args.cold_batches):
            next(cold)
        cold_clips_per_s = args.cold_batches * args.batch_size / (time.perf_counter() - t0)
        loader = ClipLoader(
            ds, split=args.split, clip_frames=args.clip_frames, batch_size=args.batch_size, seed=0
        )
        for _ in range(20):  # warm-up: page cache, allocator
            next(loader)
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < args.seconds:
            batch = next(loader)
            n += 1
        clips_per_s = n * args.batch_size / elapsed
        overlap = None
        if args.step_ms > 0 and not evicted:
            print("--step-ms skipped: this OS cannot evict files from the page cache")
        elif args.step_ms > 0:
            overlap = overlap_with_compute(ds, args)
        h, w = ds.frame_size
        result = {
            "benchmark": "data_loader",
            "dataset": str(path) if args.data else "synthetic (random bytes)",
            "split": args.split,
            "frame_size": [h, w],
            "episodes": ds.num_episodes,
            "frames": ds.num_frames,
            "batch_size": args.batch_size,
            "clip_frames": args.clip_frames,
            "batch_shape": list(batch["frames"].shape),
            "batches": n,
            "seconds": elapsed,
            "batches_per_s": n / elapsed,
            "clips_per_s": clips_per_s,
            "cold_clips_per_s": cold_clips_per_s if evicted else None,
            "cold_batches": args.cold_batches,
            "frames_per_s": clips_per_s * args.clip_frames,
            "training_needs_clips_per_s": TRAINING_CLIPS_PER_S,
            "speedup_over_training": clips_per_s / TRAINING_CLIPS_PER_S,
            "disk_bytes": ds.disk_bytes(),
            "bytes_per_million_frames": ds.disk_bytes() / ds.num_frames * 1e6,
            "raw_frame_bytes_per_million_frames": h * w * 3 * 1e6,
            "overlap_with_compute": overlap,
            "synthetic_write_s": None if args.data else write_s,
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "processor": platform.processor(),
            "threads": 1,
        }
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out)
    atomic_write_json(out, result, indent=1)
    print(json.dumps(result, indent=1))
    print(
        f"{clips_per_s:,.0f} clips/s warm, {cold_clips_per_s:,.0f} cold = "
        f"{result['speedup_over_training']:.0f}x / {cold_clips_per_s / TRAINING_CLIPS_PER_S:.0f}x "
        f"the tiny preset's {TRAINING_CLIPS_PER_S:.0f}; "
        f"{result['bytes_per_million_frames'] / 1e9:.2f} GB per "
        f"million frames -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
