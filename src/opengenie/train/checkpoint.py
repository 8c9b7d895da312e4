"""Training checkpoints, laid out in a run directory:

    RUN/config.json, RUN/model.safetensors   the latest weights (a loadable World or tokenizer)
    RUN/checkpoints/step-00000500/           the last K complete checkpoints (+ trainer_state.pt:
                                             optimiser, loader and RNG state) for exact resume
    RUN/best/                                the best weights on validation (+ best.json)
    RUN/metrics.jsonl, RUN/tb/               logs

Every directory is written to a temp dir and renamed, every file to a temp file and renamed,
so a crash or Ctrl-C never leaves a broken checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from opengenie.config import GenieConfig
from opengenie.models.world import _default_modes, _replace_dir, read_checkpoint_config
from opengenie.models.world import load_weights as world_load_weights

TOKENIZER_FORMAT = "opengenie-tokenizer"


def _write_model_files(directory: Path, fmt: str, config: GenieConfig, model: nn.Module) -> None:
    meta = {"format": fmt, "version": 1, "config": config.to_dict()}
    (directory / "config.json").write_text(json.dumps(meta, indent=2))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))


def save_model_dir(directory: Path, fmt: str, config: GenieConfig, model: nn.Module, extra=None):
    """Write a model directory (config + weights [+ trainer_state.pt]) atomically."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        _write_model_files(tmp, fmt, config, model)
        if extra is not None:
            torch.save(extra, tmp / "trainer_state.pt")
        _replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def update_latest(run: Path, fmt: str, config: GenieConfig, model: nn.Module) -> None:
    """Refresh RUN/config.json and RUN/model.safetensors, each by an atomic rename."""
    run.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".latest.", dir=run))
    try:
        _write_model_files(tmp, fmt, config, model)
        _default_modes(tmp)
        os.replace(tmp / "model.safetensors", run / "model.safetensors")
        os.replace(tmp / "config.json", run / "config.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_training_checkpoint(
    run: Path, fmt: str, config: GenieConfig, model: nn.Module, state: dict, keep: int
) -> Path:
    """A resumable checkpoint under RUN/checkpoints/, keeping the last `keep`; also the latest."""
    path = run / "checkpoints" / f"step-{state['step']:08d}"
    save_model_dir(path, fmt, config, model, state)
    for old in list_checkpoints(run)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    update_latest(run, fmt, config, model)
    return path


def remove_stale_staging(run: Path) -> list[Path]:
    """Remove what a killed write left behind: the staging folders of checkpoints
    (RUN/checkpoints/.step-*), of RUN/best (RUN/.best.*) and of the latest weights
    (RUN/.latest.*). Called when a run starts, before it writes anything; returns them."""
    stale = [
        *run.glob("checkpoints/.step-*"),
        *run.glob(".best.*"),
        *run.glob(".latest.*"),
    ]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
    return [p for p in stale if not p.exists()]


def list_checkpoints(run: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp dirs start with a dot and are ignored)."""
    root = run / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if (p / "trainer_state.pt").exists()]
    return sorted(done, key=lambda p: p.name)


def latest_checkpoint(run: Path) -> Path | None:
    found = list_checkpoints(run)
    return found[-1] if found else None


def load_weights(
    directory: Path, model: nn.Module, prefix: str = "", optional: tuple[str, ...] = ()
) -> None:
    """Load DIR/model.safetensors into `model`: the World's loader, one-line errors and all
    (see opengenie.models.world.load_weights for `prefix` and `optional`)."""
    world_load_weights(directory, model, prefix, optional)


def load_trainer_state(directory: Path) -> dict:
    return torch.load(directory / "trainer_state.pt", weights_only=True)


def read_tokenizer_config(directory: str | os.PathLike) -> GenieConfig:
    return read_checkpoint_config(Path(directory), TOKENIZER_FORMAT)
