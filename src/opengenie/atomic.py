"""Whole-file writes that a crash or Ctrl-C can never leave half-written.

Each write goes to a hidden temp file beside the target and is renamed over it; on POSIX the
rename is atomic, so a reader sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = False) -> None:
    """Write `data` to `path` via a temp file + rename; the parent directory is created.

    `durable` also fsyncs the temp file before the rename, for commit points that must
    survive a power cut (a dataset's index), not just a crash of this process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable)


def atomic_write_json(
    path: str | os.PathLike, obj: Any, indent: int = 2, durable: bool = False
) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n", durable)
