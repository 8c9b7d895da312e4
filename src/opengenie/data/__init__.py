"""Data: sources (Procgen, video files, Atari) -> uint8 shards + index -> clip batches.

Names are imported lazily (PEP 562) so `opengenie --help` and the spawned generator processes do
not pay for torch until a loader is actually used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Dataset": "opengenie.data.storage",
    "DatasetWriter": "opengenie.data.storage",
    "Episode": "opengenie.data.storage",
    "SPLITS": "opengenie.data.storage",
    "open_dataset": "opengenie.data.storage",
    "ClipLoader": "opengenie.data.loader",
    "PrefetchLoader": "opengenie.data.loader",
    "make_synthetic_dataset": "opengenie.data.synthetic",
    "coinrun_action_group": "opengenie.data.coinrun",
    "COINRUN_GROUP_NAMES": "opengenie.data.coinrun",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'opengenie.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
