#!/usr/bin/env python3
"""One dataset that lists the episodes of several, as they are (issue 14's lineage 7 trained on
data/held and data/held16 together). `opengenie data coinrun` appends to a dataset but never
records a level twice in a split, so two recordings of the same levels with different policies
are joined here instead: each shard is hard-linked (copied across file systems) under a new
number, and the index is written last, so an interrupted merge leaves no dataset behind.

  python scripts/merge_datasets.py data/held data/held16 --out data/held_mix
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from opengenie.atomic import atomic_write_json
from opengenie.data.storage import read_index
from opengenie.errors import UserError

SAME = ("format", "version", "fps", "frame_size", "channels")  # must agree between inputs


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src.resolve(), dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def merge(sources: list[Path], out: Path) -> int:
    """Write `out` listing every shard of `sources`; returns the number of shards."""
    if out.exists():
        raise UserError(f"{out} exists: pick a new --out")
    metas = [read_index(path)[0] for path in sources]  # UserError naming a damaged input
    for key in SAME:
        if len({str(m[key]) for m in metas}) > 1:
            raise UserError(f"the data sets differ in {key}: {[m[key] for m in metas]}")
    (out / "shards").mkdir(parents=True)
    shards, info = [], {}
    for path, meta in zip(sources, metas, strict=True):
        for name in meta["shards"]:
            new = f"shard-{len(shards):06d}"
            for ext in (".frames", ".actions", ".json"):
                link_or_copy(path / "shards" / f"{name}{ext}", out / "shards" / f"{new}{ext}")
            shards.append(new)
        for source, source_info in meta.get("source_info", {}).items():
            recordings = info.get(source, {}).get("recordings", []) + source_info.get(
                "recordings", []
            )  # both data sets' recordings of a source, in order
            info[source] = {**source_info, "recordings": recordings} if recordings else source_info
    index = {key: metas[0][key] for key in SAME} | {"shards": shards, "source_info": info}
    atomic_write_json(out / "dataset.json", index, indent=1, durable=True)  # the commit point
    return len(shards)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("sources", nargs="+", type=Path, help="dataset directories")
    p.add_argument("--out", type=Path, required=True, help="the new dataset (must not exist)")
    args = p.parse_args()
    try:
        n = merge(args.sources, args.out)
    except UserError as e:
        sys.exit(f"merge_datasets: {e}")
    print(f"wrote {args.out} ({n} shards); see `opengenie data info {args.out}`")


if __name__ == "__main__":
    main()
