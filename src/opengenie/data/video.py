"""Video files (mp4/webm/mkv/gif/...) as a data source: decode with PyAV, resample to a fixed fps,
centre-crop to square, resize, cut long videos into episodes.

Each file is decoded completely into a scratch file before any of its frames enter the dataset, so
a file that fails half way (corrupt, truncated) contributes nothing, and an interrupted run keeps
whole files only. The split is a stable hash of the file's bytes: the same video always lands in
the same split, even renamed or copied, so no video is in both train and test.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from opengenie.data.storage import DEFAULT_SHARD_BYTES, SPLITS, DatasetWriter
from opengenie.errors import UserError
from opengenie.options import FPS

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".gif", ".avi", ".mov", ".m4v", ".mpg", ".mpeg")


_EPS = 1e-6  # seconds: frame timestamps are floats; keeps k / fps == t from flipping by rounding


class VideoError(Exception):
    """A file that cannot be decoded as video (reported by name and skipped)."""


def find_videos(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files named directly (any extension: a non-video is reported when it fails to decode), plus
    files with a video extension found recursively in named directories; sorted, no duplicates."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(
                sorted(
                    f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS
                )
            )
        elif p.is_file():
            found.append(p)
        else:
            raise UserError(f"{p} does not exist; pass video files or directories that hold them")
    unique = list(dict.fromkeys(f.resolve() for f in found))
    if not unique:
        exts = " ".join(VIDEO_EXTENSIONS)
        raise UserError(
            f"no video files ({exts}) in {', '.join(map(str, paths))}; pass other paths"
        )
    return unique


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_for_digest(digest: str, val_fraction: float, test_fraction: float) -> str:
    """Stable split from a file's content hash: uniform u in [0, 1) -> test | val | train."""
    u = int(digest[:16], 16) / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def _square_resize(img: Any, size: int) -> np.ndarray:
    """PIL image -> centre square crop -> uint8 (size, size, 3)."""
    from PIL import Image

    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.convert("RGB").crop((left, top, left + s, top + s))
    # Pillow's bilinear filter widens its support when shrinking, i.e. it antialiases.
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def decode_video(path: str | os.PathLike[str], fps: float, size: int) -> Iterator[np.ndarray]:
    """Frames of the file's first video stream resampled to ``fps``: output frame k shows the source
    frame on screen at time k / fps. Yields uint8 (size, size, 3). Raises VideoError."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoError(_short(e)) from None
    with container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        k = 0  # next output frame index
        prev: Any = None  # the source frame shown until the current one
        prev_i = -1  # its index among decoded frames
        prev_t = 0.0
        cached: tuple[int, np.ndarray] | None = None  # (index, converted frame): frames can repeat
        t0: float | None = None
        last_dt = 1.0 / rate
        n_src = 0
        try:
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else n_src / rate
                n_src += 1
                if t0 is None:
                    t0 = t
                t -= t0
                if prev is not None:
                    if t > prev_t:
                        last_dt = t - prev_t
                    while k / fps < t - _EPS:  # prev is on screen for [prev_t, t)
                        if cached is None or cached[0] != prev_i:
                            cached = (prev_i, _square_resize(prev.to_image(), size))
                        yield cached[1]
                        k += 1
                prev, prev_i, prev_t = frame, n_src, t
            if prev is None:
                raise VideoError("no frames could be decoded")
            end = prev_t + last_dt
            while k / fps < end - _EPS:  # the last frame stays on screen for one source frame time
                if cached is None or cached[0] != prev_i:
                    cached = (prev_i, _square_resize(prev.to_image(), size))
                yield cached[1]
                k += 1
        except (av.FFmpegError, OSError, ValueError) as e:
            raise VideoError(_short(e)) from None


def _short(e: BaseException) -> str:
    """One line, without the errno and path FFmpeg errors repeat."""
    msg = getattr(e, "strerror", None) or str(e).strip() or type(e).__name__
    return str(msg).splitlines()[0][:200]


def episode_lengths(n: int, episode_frames: int) -> list[int]:
    """Cut n frames into ceil(n / episode_frames) near-equal episodes (no tiny tail episode)."""
    parts = math.ceil(n / episode_frames)
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def ingest_videos(
    out: str | Path,
    paths: Sequence[str | os.PathLike[str]],
    fps: float = 10.0,
    size: int = 64,
    split: str | None = None,
    episode_frames: int = 1000,
    min_frames: int = 16,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    log: Any = None,
) -> dict[str, Any]:
    """Add video files to the dataset at ``out``. Returns a summary with ``ingested``, ``skipped``
    (list of (path, reason)), ``episodes``, ``frames`` and per-split file counts. Raises UserError
    when no file could be ingested (and then leaves ``out`` as it was)."""
    from tqdm import tqdm

    log = log or (lambda msg: print(msg, file=sys.stderr))
    if split is not None and split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    FPS.check(fps, "--fps")  # the CLI's rule (finite, > 0): NaN passed `fps <= 0` here
    if size < 1:
        raise UserError(f"--size must be >= 1, got {size}")
    if episode_frames < 1 or min_frames < 1:
        raise UserError("--episode-frames and --min-frames must be >= 1")
    if not (val_fraction >= 0 and test_fraction >= 0 and val_fraction + test_fraction < 1):
        raise UserError("--val-fraction and --test-fraction must be >= 0 and sum to less than 1")
    files = find_videos(paths)
    skipped: list[tuple[str, str]] = []
    per_split = dict.fromkeys(SPLITS, 0)
    ingested = 0
    with DatasetWriter(out, fps=fps, size=size, shard_bytes=shard_bytes) as w:
        known = {s.rsplit("#", 1)[-1] for s in (w.existing.sources if w.existing else [])}
        bar = tqdm(files, desc="video", unit="file", file=sys.stderr, dynamic_ncols=True)
        for path in bar:
            try:
                digest = file_digest(path)
            except OSError as e:
                skipped.append((str(path), _short(e)))
                log(f"skipped {path}: {_short(e)}")
                continue
            if digest in known:
                skipped.append((str(path), "already in the dataset"))
                log(f"skipped {path}: already in the dataset (same content)")
                continue
            # Scratch file in the dataset's tmp dir: same disk, removed with the writer.
            with tempfile.TemporaryFile(dir=w.scratch_dir) as scratch:
                n = 0
                try:
                    for frame in decode_video(path, fps, size):
                        scratch.write(frame.tobytes())
                        n += 1
                except VideoError as e:
                    skipped.append((str(path), str(e)))
                    log(f"skipped {path}: not a readable video ({e})")
                    continue
                if n < min_frames:
                    skipped.append((str(path), f"{n} frames at {fps:g} fps < --min-frames"))
                    log(
                        f"skipped {path}: only {n} frames at {fps:g} fps "
                        f"(< --min-frames {min_frames})"
                    )
                    continue
                scratch.flush()
                frames = np.memmap(scratch, dtype=np.uint8, mode="r", shape=(n, size, size, 3))
                s = split or split_for_digest(digest, val_fraction, test_fraction)
                source = f"video:{path.name}#{digest}"
                off = 0
                for length in episode_lengths(n, episode_frames):
                    w.add_episode(frames[off : off + length], None, source=source, split=s)
                    off += length
                del frames
            known.add(digest)
            ingested += 1
            per_split[s] += 1
            w.checkpoint()  # publish full shards at file boundaries only
            bar.set_postfix(frames=w.frames_added, refresh=False)
        bar.close()
        if ingested == 0:
            w.abort()
            reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:3])
            raise UserError(
                f"no video could be ingested ({reasons}); pass readable video files that are "
                "not yet in the dataset and at least --min-frames long"
            )
        episodes, frames_added = w.episodes_added, w.frames_added
    return {
        "ingested": ingested,
        "skipped": skipped,
        "episodes": episodes,
        "frames": frames_added,
        "files_per_split": per_split,
    }
