"""Training checkpoints: config.json + safetensors weights + a torch file of optimiser, loader
and RNG state, written to a temp dir and renamed so a crash never leaves a broken one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from opengenie.config import GenieConfig
from opengenie.models.world import _replace_dir, read_checkpoint_config

TOKENIZER_FORMAT = "opengenie-tokenizer"


def save_checkpoint(
    directory: Path, fmt: str, config: GenieConfig, model: nn.Module, trainer_state: dict
) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        meta = {"format": fmt, "version": 1, "config": config.to_dict()}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        torch.save(trainer_state, tmp / "trainer_state.pt")
        _replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_weights(directory: Path, model: nn.Module, prefix: str = "") -> None:
    """Load safetensors weights (optionally only those under `prefix.`) into `model`."""
    state = load_file(str(directory / "model.safetensors"))
    if prefix:
        state = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
    model.load_state_dict(state)


def load_trainer_state(directory: Path) -> dict | None:
    path = directory / "trainer_state.pt"
    return torch.load(path, weights_only=True) if path.exists() else None


def read_tokenizer_config(directory: str | os.PathLike) -> GenieConfig:
    return read_checkpoint_config(Path(directory), TOKENIZER_FORMAT)
