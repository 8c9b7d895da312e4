"""`opengenie data info`: what a dataset holds, and a contact sheet of sample frames."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from opengenie.atomic import atomic_write_bytes
from opengenie.data.storage import SPLITS, Dataset


def describe(ds: Dataset) -> dict[str, Any]:
    """Counts per split and source, hours at the fps, level ranges, disk use (JSON-able)."""
    splits: dict[str, Any] = {}
    for split in SPLITS:
        ids = ds.episode_ids(split)
        if ids.size == 0:
            continue
        lengths = ds.ep_length[ids]
        sources: dict[str, Any] = {}
        for s in np.unique(ds.ep_source[ids]):
            name = ds.sources[int(s)]
            sel = ids[ds.ep_source[ids] == s]
            lv = ds.ep_level[sel]
            lv = lv[lv >= 0]
            sources[name] = {
                "episodes": int(sel.size),
                "frames": int(ds.ep_length[sel].sum()),
                # Half-open [first, end) and the count, so gaps in the range are visible.
                "levels": None
                if lv.size == 0
                else {"first": int(lv.min()), "end": int(lv.max()) + 1, "count": int(lv.size)},
                # How the episodes were made, one entry per recording command (Procgen only).
                "recordings": [
                    r
                    for r in ds.source_info.get(name, {}).get("recordings", [])
                    if r.get("split") == split
                ],
            }
        splits[split] = {
            "episodes": int(ids.size),
            "frames": int(lengths.sum()),
            "hours": float(lengths.sum() / ds.fps / 3600),
            "episode_length": {
                "min": int(lengths.min()),
                "mean": float(lengths.mean()),
                "max": int(lengths.max()),
            },
            "with_actions": int(ds.ep_has_actions[ids].sum()),
            "sources": sources,
        }
    nbytes = ds.disk_bytes()
    return {
        "path": str(ds.path),
        "fps": ds.fps,
        "frame_size": list(ds.frame_size),
        "episodes": ds.num_episodes,
        "frames": ds.num_frames,
        "hours": ds.num_frames / ds.fps / 3600,
        "shards": len(ds.shards),
        "disk_bytes": nbytes,
        "bytes_per_million_frames": nbytes / max(ds.num_frames, 1) * 1e6,
        "splits": splits,
    }


def format_description(d: dict[str, Any]) -> str:
    h, w = d["frame_size"]
    lines = [
        f"dataset   {d['path']}",
        f"frames    {d['frames']:,} in {d['episodes']:,} episodes, {w}x{h} at {d['fps']:g} fps "
        f"= {d['hours']:.2f} h",
        f"disk      {d['disk_bytes'] / 2**20:,.1f} MiB in {d['shards']} shards "
        f"({d['bytes_per_million_frames'] / 1e9:.2f} GB per million frames)",
    ]
    for split, s in d["splits"].items():
        el = s["episode_length"]
        lines.append(
            f"{split:<9} {s['episodes']:,} episodes, {s['frames']:,} frames ({s['hours']:.2f} h), "
            f"length {el['min']}/{el['mean']:.0f}/{el['max']} min/mean/max, "
            f"{s['with_actions']:,} with actions"
        )
        for name, src in s["sources"].items():
            lv = src["levels"]
            levels = "" if lv is None else f", levels {lv['first']}:{lv['end']} ({lv['count']:,})"
            lines.append(f"          {name}: {src['episodes']:,} episodes{levels}")
            lines.extend(f"            {_recording_line(r)}" for r in src.get("recordings", []))
    return "\n".join(lines)


def _recording_line(r: dict[str, Any]) -> str:
    """One recording command, in the words of `opengenie data coinrun`'s options."""
    first, end = r["levels"]
    parts = [f"recorded {r['episodes']:,} episodes of levels {first}:{end}: --policy {r['policy']}"]
    if "hold" in r:
        parts.append(f"--hold {r['hold']}")
    parts.append(f"--mode {r['mode']}")
    if r.get("max_steps") is not None:
        parts.append(f"--max-steps {r['max_steps']}")
    if r.get("seed"):
        parts.append(f"--seed {r['seed']}")
    if "expert_ties" in r:
        parts.append(f"--expert-ties {','.join(r['expert_ties'])}")
    return " ".join(parts)


def contact_sheet(
    ds: Dataset,
    path: str | os.PathLike[str],
    rows: int = 6,
    cols: int = 8,
    seed: int = 0,
    scale: int = 2,
) -> Path:
    """A grid PNG: each row is one random episode, its columns frames spread evenly across it.

    Written atomically (temp file + rename). Returns the path."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ids = rng.choice(ds.num_episodes, size=min(rows, ds.num_episodes), replace=False)
    h, w = ds.frame_size
    pad = 2
    sheet = np.full(
        (len(ids) * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8
    )  # (rows*(H+pad)+pad, cols*(W+pad)+pad, 3), white grid lines
    for r, e in enumerate(sorted(ids.tolist())):
        frames = ds.frames(e)  # (T, H, W, 3)
        for c, t in enumerate(np.linspace(0, len(frames) - 1, cols).round().astype(int)):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            sheet[y : y + h, x : x + w] = frames[t]
    img = Image.fromarray(sheet)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    out = Path(path)
    png = io.BytesIO()
    img.save(png, format="PNG")
    atomic_write_bytes(out, png.getvalue())
    return out
