"""A World: tokenizer + latent action model + dynamics, saved as one self-contained directory,
and stepped frame by frame with key/value caches so a new frame costs only its own tokens."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from opengenie.config import GenieConfig
from opengenie.errors import UserError
from opengenie.models.dynamics import Dynamics
from opengenie.models.lam import LatentActionModel
from opengenie.models.maskgit import maskgit_fill
from opengenie.models.tokenizer import VideoTokenizer
from opengenie.nn import KVCache

WORLD_FORMAT = "opengenie-world"
SHIPPED_WORLD = Path(__file__).resolve().parent.parent / "assets" / "coinrun_world"


class World(nn.Module):
    """Holds the three models and their config; `reset(prompt)` then `step(action)` to play."""

    def __init__(self, config: GenieConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.tokenizer = VideoTokenizer(config)
        self.lam = LatentActionModel(config)
        self.dynamics = Dynamics(config)
        self.sampling = config.sampling  # steps / temperature / mode; settable per World
        self.action_map: dict | None = None  # from eval, when the data had true actions
        self._dyn_cache: KVCache | None = None
        self._dec_cache: KVCache | None = None
        self._generator = torch.Generator()
        self.eval()

    @property
    def num_actions(self) -> int:
        return self.lam.num_actions

    @property
    def device(self) -> torch.device:
        return self.dynamics.pos.device

    # -- playing -------------------------------------------------------------------------
    @torch.no_grad()
    def reset(self, prompt, seed: int | None = None) -> np.ndarray:
        """Start from one image (path, PIL image or (H, W, 3) uint8 array of any size: centre-
        cropped and resized). Returns the prompt as the tokenizer sees it, (H, W, 3) uint8."""
        from opengenie.imageio import load_prompt

        image = load_prompt(prompt, self.config.image_size)  # (H, W, 3) uint8
        if seed is not None:
            self._generator.manual_seed(seed)
        video = torch.from_numpy(image.copy()).to(self.device).float().div(255)[None, None]
        ids = self.tokenizer.encode(video)  # (1, 1, h, w)
        window = self.config.frames
        self._dyn_cache = self.dynamics.transformer.new_cache(window)
        self._dec_cache = self.tokenizer.decoder.new_cache(window)
        self.dynamics.step_logits(ids.flatten(2), None, self._dyn_cache, update_cache=True)
        return _to_uint8(self.tokenizer.decode(ids, self._dec_cache, update_cache=True))

    @torch.no_grad()
    def step(self, action: int) -> np.ndarray:
        """Take latent action `action` (0-based) and return the next frame, (H, W, 3) uint8."""
        if self._dyn_cache is None:
            raise UserError("call world.reset(prompt) before world.step(action)")
        if not isinstance(action, (int, np.integer)) or not 0 <= action < self.num_actions:
            raise UserError(f"unknown action {action!r}: use an id in 0..{self.num_actions - 1}")
        ids = self.next_tokens(int(action))  # (1, 1, h, w)
        return _to_uint8(self.tokenizer.decode(ids, self._dec_cache, update_cache=True))

    def next_tokens(self, action: int) -> torch.Tensor:
        """MaskGIT-sample the next frame's tokens through the cache and commit them."""
        grid = self.config.token_grid
        vector = self.lam.action_vectors(torch.tensor([action], device=self.device))  # (1, A)
        cache, s = self._dyn_cache, self.sampling

        def logits_fn(current: torch.Tensor) -> torch.Tensor:
            return self.dynamics.step_logits(current[:, None], vector, cache)[:, 0]

        tokens = maskgit_fill(
            logits_fn,
            1,
            grid * grid,
            self.dynamics.mask_id,
            s.steps,
            s.temperature,
            s.mode,
            self._generator,
            self.device,
        )
        self.dynamics.step_logits(tokens[:, None], vector, cache, update_cache=True)
        return tokens.view(1, 1, grid, grid)

    # -- saving and loading --------------------------------------------------------------
    def save(self, directory: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
        """Write config.json + model.safetensors (+ action_map.json) atomically to `directory`."""
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            meta = {"format": WORLD_FORMAT, "version": 1, "config": self.config.to_dict()}
            (tmp / "config.json").write_text(json.dumps(meta, indent=2))
            tensors = {
                k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
                for k, v in self.state_dict().items()
            }
            save_file(tensors, str(tmp / "model.safetensors"))
            if self.action_map is not None:
                (tmp / "action_map.json").write_text(json.dumps(self.action_map, indent=2))
            _replace_dir(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    @classmethod
    def load(
        cls, directory: str | os.PathLike | None = None, device: str | torch.device = "cpu"
    ) -> World:
        """Load a World directory; with no path, the CoinRun world shipped in the package."""
        if directory is None:
            if not (SHIPPED_WORLD / "config.json").exists():
                raise UserError("no world ships with this version yet: pass --world DIR")
            directory = SHIPPED_WORLD
        path = Path(directory)
        config = read_checkpoint_config(path, WORLD_FORMAT)
        world = cls(config)
        state = load_file(str(path / "model.safetensors"))
        expected = world.state_dict()
        state = {k: v.to(expected[k].dtype) if k in expected else v for k, v in state.items()}
        world.load_state_dict(state)
        if (path / "action_map.json").exists():
            world.action_map = json.loads((path / "action_map.json").read_text())
        return world.to(device).eval()


def read_checkpoint_config(path: Path, expected_format: str) -> GenieConfig:
    """Read a checkpoint's config.json, with one-line errors for the usual mix-ups."""
    if not path.is_dir():
        raise UserError(f"{path} is not a directory: pass a {expected_format} directory")
    meta_path = path / "config.json"
    if not meta_path.exists():
        hint = " (it is a data set)" if (path / "dataset.json").exists() else ""
        raise UserError(f"{path} has no config.json{hint}: pass a {expected_format} directory")
    meta = json.loads(meta_path.read_text())
    found = meta.get("format")
    if found != expected_format:
        raise UserError(f"{path} holds a {found or 'unknown'} checkpoint, not a {expected_format}")
    return GenieConfig.from_dict(meta["config"])


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` into place as `target`; an old `target` is only removed once `new` is in."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """(1, 1, H, W, C) float in [0, 1] -> (H, W, C) uint8."""
    return (video[0, -1].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
