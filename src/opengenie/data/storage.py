"""On-disk dataset: uint8 frames in bounded shards plus a small index; see docs/DATA.md.

Layout of a dataset directory::

    DIR/dataset.json                commit point: format, fps, frame size, committed shard names
    DIR/shards/shard-000000.frames  raw uint8 (N, H, W, 3), C order; N = frames in the shard
    DIR/shards/shard-000000.actions raw int16 LE (N,): the action taken after frame t, -1 unknown
    DIR/shards/shard-000000.json    the shard's episodes: offset, length, split, source, level seed

Shards are immutable once committed. A writer builds new shards in ``DIR/.tmp-*``, renames them
into ``shards/`` and then atomically replaces ``dataset.json``; a reader only sees shards listed
there, so a crash at any point leaves either the old or the new dataset, never a half-written one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from opengenie.atomic import atomic_write_json
from opengenie.errors import UserError

FORMAT = "opengenie-dataset"
VERSION = 1
SPLITS = ("train", "val", "test")
DEFAULT_SHARD_BYTES = 256 * 1024 * 1024  # ~21k frames at 64x64: bounded, yet few files at 1B frames
MAX_OPEN_SHARDS = 64  # memory maps kept open per Dataset (each holds a file descriptor)
ACTION_DTYPE = np.dtype("<i2")


@dataclass(frozen=True)
class Episode:
    """One episode's index row. ``level_seed`` is None when the source has no levels."""

    id: int
    shard: str
    offset: int  # first frame within the shard
    length: int  # frames
    split: str
    source: str
    level_seed: int | None
    has_actions: bool


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _one_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


SHARD_NAME = re.compile(r"shard-[0-9]{6,}")  # the writer's names; never a path


def _damaged(path: Path, why: str) -> UserError:
    return UserError(f"{path} is damaged: {why}; restore it or re-create the dataset")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise _damaged(path, "the file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _damaged(path, f"not valid JSON ({_one_line(e)})") from None


def _read_meta(path: Path) -> dict[str, Any]:
    """dataset.json, checked: format, version, fps, frame size and shard names."""
    meta_path = path / "dataset.json"
    meta = _read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{meta_path} is not an opengenie dataset; point at a dataset directory")
    if meta.get("version") != VERSION:
        raise UserError(
            f"{path} has dataset format version {meta.get('version')}, this opengenie reads "
            f"version {VERSION}; re-create the dataset with this version"
        )
    fps, size, shards = meta.get("fps"), meta.get("frame_size"), meta.get("shards")
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and 0 < fps < math.inf):
        raise _damaged(meta_path, f"fps must be a positive number, not {fps!r}")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)):
        raise _damaged(meta_path, f"frame_size must be [height, width], not {size!r}")
    if not isinstance(shards, list):
        raise _damaged(meta_path, f"shards must be a list of shard names, not {shards!r}")
    for name in shards:
        # A name is only ever joined under DIR/shards: no "../", no absolute path, no separator.
        if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
            raise _damaged(meta_path, f"{name!r} is not a shard name (shard-NNNNNN)")
    if len(set(shards)) != len(shards):
        raise _damaged(meta_path, "a shard is listed twice")
    if not isinstance(meta.get("source_info", {}), dict):
        raise _damaged(meta_path, "source_info must be an object")
    return meta


def _read_shard(path: Path, name: str, frame_size: tuple[int, int]) -> dict[str, Any]:
    """One shard's index, checked against itself and against its files' sizes."""
    base = path / "shards" / name
    table_path = base.with_name(f"{name}.json")
    table = _read_json(table_path)
    if not isinstance(table, dict):
        raise _damaged(table_path, "a shard index must be a JSON object")
    n, episodes = table.get("frames"), table.get("episodes")
    if not _is_int(n) or n < 0:
        raise _damaged(table_path, f"'frames' must be a frame count, not {n!r}")
    if not isinstance(episodes, list):
        raise _damaged(table_path, "'episodes' must be a list")
    for i, ep in enumerate(episodes):
        why = _episode_problem(ep, n)
        if why:
            raise _damaged(table_path, f"episode {i} {why}")
    h, w = frame_size
    for ext, nbytes in ((".frames", n * h * w * 3), (".actions", n * ACTION_DTYPE.itemsize)):
        _check_size(base.with_name(f"{name}{ext}"), nbytes, n)
    return table


def _episode_problem(ep: Any, frames: int) -> str | None:
    if not isinstance(ep, dict):
        return "is not an object"
    offset, length = ep.get("offset"), ep.get("length")
    if not (_is_int(offset) and _is_int(length) and offset >= 0 and length >= 1):
        return f"has offset {offset!r} and length {length!r}"
    if offset + length > frames:
        return f"ends at frame {offset + length}, past the shard's {frames}"
    if ep.get("split") not in SPLITS:
        return f"has split {ep.get('split')!r}, not one of {', '.join(SPLITS)}"
    if not isinstance(ep.get("source"), str):
        return "has no source name"
    level = ep.get("level_seed")
    if level is not None and not (_is_int(level) and 0 <= level < 2**63):
        return f"has level_seed {level!r}"
    if not isinstance(ep.get("has_actions"), bool):
        return "has no has_actions flag"
    return None


def _check_size(path: Path, nbytes: int, frames: int) -> None:
    """A missing or truncated shard file would crash in mmap, or read as other frames."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _damaged(path, "the file is missing") from None
    except OSError as e:
        raise _damaged(path, f"cannot be read ({_one_line(e)})") from None
    if size != nbytes:
        raise _damaged(path, f"{size} bytes, but its index says {frames} frames = {nbytes} bytes")


def read_index(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """dataset.json and every listed shard's index, checked on open: the one place the index
    schema is checked. Returns the dataset's metadata and the shards' tables in order."""
    meta = _read_meta(path)
    size = (meta["frame_size"][0], meta["frame_size"][1])
    return meta, [_read_shard(path, name, size) for name in meta["shards"]]


class Dataset:
    """Read-only view of a dataset directory at the moment it was opened.

    The episode table lives in memory as numpy columns (a few dozen bytes per episode); frames
    stay on disk and are read through memory maps, so opening a billion-frame dataset is cheap.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        meta, tables = read_index(self.path)  # UserError naming the file if damaged
        self.fps: float = float(meta["fps"])
        self.frame_size: tuple[int, int] = (int(meta["frame_size"][0]), int(meta["frame_size"][1]))
        self.shards: list[str] = list(meta["shards"])
        self.source_info: dict[str, dict[str, Any]] = dict(meta.get("source_info", {}))
        self._source_names: list[str] = []
        source_ids: dict[str, int] = {}
        shard_col, off_col, len_col, split_col, src_col, lvl_col, act_col = ([] for _ in range(7))
        self._shard_frames: list[int] = []
        for s, table in enumerate(tables):
            self._shard_frames.append(int(table["frames"]))
            for ep in table["episodes"]:
                src = ep["source"]
                if src not in source_ids:
                    source_ids[src] = len(self._source_names)
                    self._source_names.append(src)
                shard_col.append(s)
                off_col.append(ep["offset"])
                len_col.append(ep["length"])
                split_col.append(SPLITS.index(ep["split"]))
                src_col.append(source_ids[src])
                lvl_col.append(-1 if ep["level_seed"] is None else ep["level_seed"])
                act_col.append(ep["has_actions"])
        # Columns indexed by episode id (= position in commit order).
        self.ep_shard = np.asarray(shard_col, dtype=np.int32)
        self.ep_offset = np.asarray(off_col, dtype=np.int64)
        self.ep_length = np.asarray(len_col, dtype=np.int64)
        self.ep_split = np.asarray(split_col, dtype=np.int8)  # index into SPLITS
        self.ep_source = np.asarray(src_col, dtype=np.int32)  # index into self._source_names
        self.ep_level = np.asarray(lvl_col, dtype=np.int64)  # -1: no level seed
        self.ep_has_actions = np.asarray(act_col, dtype=bool)
        self._maps: OrderedDict[int, tuple[np.memmap, np.memmap]] = OrderedDict()

    # -- counts ---------------------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return int(self.ep_length.size)

    @property
    def num_frames(self) -> int:
        return int(self.ep_length.sum())

    @property
    def sources(self) -> list[str]:
        return list(self._source_names)

    def episode_ids(self, split: str | None = None) -> np.ndarray:
        """Episode ids (int64, commit order) of one split, or of all splits when None."""
        if split is None:
            return np.arange(self.num_episodes, dtype=np.int64)
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.ep_split == SPLITS.index(split)).astype(np.int64)

    def episode(self, i: int) -> Episode:
        lvl = int(self.ep_level[i])
        return Episode(
            id=int(i),
            shard=self.shards[self.ep_shard[i]],
            offset=int(self.ep_offset[i]),
            length=int(self.ep_length[i]),
            split=SPLITS[self.ep_split[i]],
            source=self._source_names[self.ep_source[i]],
            level_seed=None if lvl < 0 else lvl,
            has_actions=bool(self.ep_has_actions[i]),
        )

    def episodes(self, split: str | None = None) -> list[Episode]:
        return [self.episode(int(i)) for i in self.episode_ids(split)]

    # -- data -----------------------------------------------------------------------------------
    def _shard(self, s: int) -> tuple[np.memmap, np.memmap]:
        maps = self._maps.get(s)
        if maps is not None:
            self._maps.move_to_end(s)
            return maps
        n = self._shard_frames[s]
        h, w = self.frame_size
        base = self.path / "shards" / self.shards[s]
        for ext, nbytes in ((".frames", n * h * w * 3), (".actions", n * ACTION_DTYPE.itemsize)):
            _check_size(Path(f"{base}{ext}"), nbytes, n)  # checked on open; again, as it maps
        frames = np.memmap(f"{base}.frames", dtype=np.uint8, mode="r", shape=(n, h, w, 3))
        actions = np.memmap(f"{base}.actions", dtype=ACTION_DTYPE, mode="r", shape=(n,))
        self._maps[s] = (frames, actions)
        if len(self._maps) > MAX_OPEN_SHARDS:  # bound open file descriptors at any dataset size
            self._maps.popitem(last=False)
        return frames, actions

    def frames(self, i: int) -> np.ndarray:
        """Frames of episode ``i``: read-only memory map, uint8 (T, H, W, 3)."""
        off, n = int(self.ep_offset[i]), int(self.ep_length[i])
        return self._shard(int(self.ep_shard[i]))[0][off : off + n]

    def actions(self, i: int) -> np.ndarray:
        """Actions of episode ``i``: int64 (T,), ``a[t]`` taken after frame t; -1 where unknown."""
        off, n = int(self.ep_offset[i]), int(self.ep_length[i])
        return np.asarray(self._shard(int(self.ep_shard[i]))[1][off : off + n], dtype=np.int64)

    def levels(self, split: str | None = None, source: str | None = None) -> np.ndarray:
        """Level seeds (int64) used by a split (and source), without episodes that have none."""
        ids = self.episode_ids(split)
        if source is not None:
            if source not in self._source_names:
                return np.zeros(0, dtype=np.int64)
            ids = ids[self.ep_source[ids] == self._source_names.index(source)]
        lv = self.ep_level[ids]
        return lv[lv >= 0]

    def disk_bytes(self) -> int:
        """Bytes the committed dataset uses on disk (frames, actions, index)."""
        total = (self.path / "dataset.json").stat().st_size
        for name in self.shards:
            for ext in (".frames", ".actions", ".json"):
                total += (self.path / "shards" / f"{name}{ext}").stat().st_size
        return total

    def __repr__(self) -> str:
        return (
            f"Dataset({str(self.path)!r}, episodes={self.num_episodes}, frames={self.num_frames}, "
            f"fps={self.fps:g}, frame_size={self.frame_size})"
        )


def open_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Open a dataset directory; UserError when it is missing, not a dataset, or has no episodes."""
    p = Path(path)
    if not p.exists():
        raise UserError(
            f"dataset {p} does not exist; create it with `opengenie data coinrun|video`"
        )
    if not p.is_dir():
        raise UserError(f"{p} is a file, not a dataset directory; pass the directory")
    if not (p / "dataset.json").exists():
        raise UserError(
            f"{p} holds no dataset (no dataset.json); create one with "
            f"`opengenie data coinrun --out {p}`"
        )
    ds = Dataset(p)
    if ds.num_episodes == 0:
        raise UserError(f"dataset {p} has no episodes; add some with `opengenie data ...`")
    return ds


def _as_size(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


class DatasetWriter:
    """Creates a dataset or appends to one; episodes become visible at ``checkpoint()``/``close()``.

    >>> with DatasetWriter("data/x", fps=15, size=64) as w:
    ...     w.add_episode(frames, actions, source="procgen:coinrun:hard", level_seed=0)

    Only whole shards are published. ``checkpoint()`` publishes the shards that are full so far
    (the sources call it between units of work, so an interrupted run keeps whole episodes/files
    only); ``close()`` publishes everything; ``abort()`` (or an exception inside ``with``) drops
    what was not published, and removes the directory if this writer created it and nothing was
    published.
    One writer at a time per directory (an exclusive lock file).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float,
        size: int | tuple[int, int],
        shard_bytes: int = DEFAULT_SHARD_BYTES,
    ) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.frame_size = _as_size(size)
        if self.fps <= 0:
            raise UserError(f"fps must be positive, got {fps}")
        if min(self.frame_size) <= 0:
            raise UserError(f"frame size must be positive, got {size}")
        if shard_bytes <= 0:
            raise UserError(f"shard size must be positive, got {shard_bytes} bytes")
        self.shard_bytes = int(shard_bytes)
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path} is a file; pass a directory for the dataset")
        self._created = not self.path.exists()
        if not self._created:
            leftovers = {p.name for p in self.path.iterdir()} - {"shards", ".lock"}
            leftovers = {n for n in leftovers if not n.startswith(".tmp-")}
            if "dataset.json" not in leftovers and leftovers:
                raise UserError(
                    f"{self.path} exists and is not an opengenie dataset; "
                    "choose a new or empty --out"
                )
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / ".lock", "a+")  # noqa: SIM115 - held for the writer's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise UserError(
                f"another process is writing to {self.path}; wait for it to finish"
            ) from None
        try:
            self._setup()
        except BaseException:
            self._release(remove_dir=self._created)
            raise

    def _setup(self) -> None:
        if (self.path / "dataset.json").exists():
            meta = _read_meta(self.path)
            if tuple(meta["frame_size"]) != self.frame_size or float(meta["fps"]) != self.fps:
                raise UserError(
                    f"{self.path} holds {meta['frame_size'][0]}x{meta['frame_size'][1]} frames at "
                    f"{meta['fps']:g} fps, not {self.frame_size[0]}x{self.frame_size[1]} at "
                    f"{self.fps:g}; use the same --size/--fps or another --out"
                )
            self.existing: Dataset | None = Dataset(self.path)
            self._shards = list(meta["shards"])
            self._source_info = dict(meta.get("source_info", {}))
        else:
            self.existing = None
            self._shards = []
            self._source_info = {}
        (self.path / "shards").mkdir(exist_ok=True)
        # Under the lock nobody else writes: drop what crashed writers left (unlisted shards, tmp).
        listed = set(self._shards)
        for p in (self.path / "shards").iterdir():
            if p.name.split(".")[0] not in listed:
                p.unlink()
        for p in self.path.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
        self._tmp = self.path / f".tmp-{uuid.uuid4().hex[:12]}"
        self._tmp.mkdir()
        used = [int(n.split("-")[1]) for n in self._shards]
        self._next_shard = max(used, default=-1) + 1
        self._pending: list[str] = []  # finished shards in tmp, not yet published
        self._open: dict[str, Any] | None = None  # the shard being filled
        self._published = 0
        self._info_changed = False  # source info not yet in dataset.json
        self._closed = False
        self.episodes_added = 0
        self.frames_added = 0

    # -- writing --------------------------------------------------------------------------------
    @property
    def frame_bytes(self) -> int:
        return self.frame_size[0] * self.frame_size[1] * 3

    @property
    def scratch_dir(self) -> Path:
        """A directory on the dataset's disk for scratch files; removed when the writer ends."""
        return self._tmp

    def set_source_info(self, source: str, info: dict[str, Any]) -> None:
        """Attach JSON metadata to a source (e.g. its action names); saved at the next publish.
        Keys not in ``info`` (the source's recordings) are kept."""
        self._source_info[source] = {**self._source_info.get(source, {}), **info}
        self._info_changed = True

    def add_recording(self, source: str, recording: dict[str, Any]) -> None:
        """Append how one command recorded episodes of ``source`` (policy, levels, options) to
        its ``recordings`` list, so that a dataset says how it was made; saved at the next
        publish."""
        info = self._source_info.setdefault(source, {})
        info["recordings"] = [*info.get("recordings", []), recording]
        self._info_changed = True

    def add_episode(
        self,
        frames: np.ndarray,
        actions: np.ndarray | None = None,
        *,
        source: str = "unknown",
        level_seed: int | None = None,
        split: str = "train",
    ) -> None:
        """Append one episode: ``frames`` uint8 (T, H, W, 3); ``actions`` int (T,) or (T-1,) where
        ``actions[t]`` was taken between frame t and t+1 (-1 unknown), or None when unknown."""
        self._check_open()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        frames = np.asarray(frames)
        h, w = self.frame_size
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
            raise ValueError(
                f"frames must be uint8 (T, {h}, {w}, 3), got {frames.dtype} {frames.shape}"
            )
        t = frames.shape[0]
        if t < 1:
            raise ValueError("an episode needs at least one frame")
        acts = np.full(t, -1, dtype=ACTION_DTYPE)  # (T,)
        if actions is not None:
            a = np.asarray(actions).astype(np.int64).reshape(-1)
            if a.size not in (t, t - 1):
                raise ValueError(f"actions must have T or T-1 entries for T={t}, got {a.size}")
            if a.size and (a.min() < -1 or a.max() > np.iinfo(ACTION_DTYPE).max):
                raise ValueError("action ids must lie in [-1, 32767]")
            acts[: a.size] = a
        if level_seed is not None and int(level_seed) < 0:
            raise ValueError("level_seed must be >= 0 or None")

        nbytes = t * self.frame_bytes
        if self._open is not None and self._open["bytes"] + nbytes > self.shard_bytes:
            self._finish_shard()  # an episode never spans shards; a shard holds >= 1 episode
        if self._open is None:
            self._start_shard()
        sh = self._open
        assert sh is not None
        np.ascontiguousarray(frames).tofile(sh["frames_f"])
        acts.tofile(sh["actions_f"])
        sh["episodes"].append(
            {
                "offset": sh["frames"],
                "length": t,
                "split": split,
                "source": str(source),
                "level_seed": None if level_seed is None else int(level_seed),
                "has_actions": actions is not None,
            }
        )
        sh["frames"] += t
        sh["bytes"] += nbytes
        self.episodes_added += 1
        self.frames_added += t
        if sh["bytes"] >= self.shard_bytes:
            self._finish_shard()

    def _start_shard(self) -> None:
        name = f"shard-{self._next_shard:06d}"
        self._next_shard += 1
        self._open = {
            "name": name,
            "frames_f": open(self._tmp / f"{name}.frames", "wb"),  # noqa: SIM115
            "actions_f": open(self._tmp / f"{name}.actions", "wb"),  # noqa: SIM115
            "episodes": [],
            "frames": 0,
            "bytes": 0,
        }

    def _finish_shard(self) -> None:
        sh = self._open
        if sh is None:
            return
        self._open = None
        for key in ("frames_f", "actions_f"):
            f = sh[key]
            f.flush()
            os.fsync(f.fileno())
            f.close()
        table = {"frames": sh["frames"], "episodes": sh["episodes"]}
        _fsync_write(self._tmp / f"{sh['name']}.json", json.dumps(table).encode())
        self._pending.append(sh["name"])

    def checkpoint(self) -> int:
        """Publish the shards finished so far (not the one being filled); returns how many."""
        self._check_open()
        return self._publish()

    def _publish(self) -> int:
        if not self._pending and not self._info_changed and (self.path / "dataset.json").exists():
            return 0
        shard_dir = self.path / "shards"
        for name in self._pending:
            for ext in (".frames", ".actions", ".json"):
                os.replace(self._tmp / f"{name}{ext}", shard_dir / f"{name}{ext}")
        _fsync_dir(shard_dir)
        n = len(self._pending)
        self._shards.extend(self._pending)
        self._pending = []
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "fps": self.fps,
            "frame_size": list(self.frame_size),
            "channels": 3,
            "shards": self._shards,
            "source_info": self._source_info,
        }
        # The commit point: readers see the old index or the new one, never a mix.
        atomic_write_json(self.path / "dataset.json", meta, indent=1, durable=True)
        _fsync_dir(self.path)
        self._info_changed = False
        self._published += n
        return n

    def close(self) -> None:
        """Publish everything added; the dataset directory is then complete and consistent."""
        if self._closed:
            return
        self._finish_shard()
        if self._shards or self._pending:
            self._publish()
            self._release(remove_dir=False)
        else:  # nothing was ever added: leave no empty dataset behind
            self._release(remove_dir=self._created)

    def abort(self) -> None:
        """Drop everything not yet published (and the directory if it would be left empty)."""
        if self._closed:
            return
        if self._open is not None:
            self._open["frames_f"].close()
            self._open["actions_f"].close()
            self._open = None
        self._pending = []
        self._release(remove_dir=self._created and not self._shards)

    def _release(self, remove_dir: bool) -> None:
        self._closed = True
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if remove_dir:
            shutil.rmtree(self.path, ignore_errors=True)
        elif not getattr(self, "_shards", None) and not (self.path / "dataset.json").exists():
            # A directory that existed but never got a dataset: leave it as we found it.
            shutil.rmtree(self.path / "shards", ignore_errors=True)
            with contextlib.suppress(OSError):
                (self.path / ".lock").unlink()
        # The (empty) .lock file stays: unlinking it could let two later writers lock two inodes.
        self._lock.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("DatasetWriter is closed")

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
