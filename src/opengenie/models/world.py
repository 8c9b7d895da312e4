"""A World: tokenizer + latent action model + dynamics, saved as one self-contained directory,
and stepped frame by frame with key/value caches so a new frame costs only its own tokens."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from opengenie.atomic import atomic_write_json
from opengenie.config import GenieConfig, SamplingConfig
from opengenie.errors import UserError
from opengenie.models.dynamics import Dynamics
from opengenie.models.lam import LatentActionModel
from opengenie.models.maskgit import guided, maskgit_fill
from opengenie.models.tokenizer import VideoTokenizer
from opengenie.nn import KVCache

WORLD_FORMAT = "opengenie-world"
SHIPPED_WORLD = Path(__file__).resolve().parent.parent / "assets" / "coinrun_world"


def world_prompt(directory: str | os.PathLike | None) -> Path | None:
    """The starting frame a World directory ships (prompt.png), if any; None: the shipped world."""
    path = Path(directory if directory is not None else SHIPPED_WORLD) / "prompt.png"
    return path if path.exists() else None


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
        self._default_session: PlaySession | None = None
        self.eval()

    @property
    def num_actions(self) -> int:
        return self.lam.num_actions

    @property
    def device(self) -> torch.device:
        return self.dynamics.pos.device

    @property
    def dynamics_dtype(self) -> torch.dtype:
        return self.dynamics.pos.dtype

    def set_dynamics_dtype(self, dtype: torch.dtype) -> World:
        """Run the dynamics model in `dtype` (e.g. torch.bfloat16 for play: its small matmuls
        ran ~3-4x faster than fp32 on the development CPU). The tokenizer and LAM stay fp32.
        Sessions started before the change must be reset (their caches hold the old dtype)."""
        self.dynamics.to(dtype)
        return self

    def still_action(self) -> int | None:
        """The latent action of standing still, action guidance's reference: the action map's
        "none" key (eval pairs it from the game's held keys), or for a world trained with label
        codes the code of that movement; None when unknown."""
        if self.action_map and "none" in self.action_map.get("keys", {}):
            return int(self.action_map["keys"]["none"])
        if self.config.lam.label_codes:
            from opengenie.data.coinrun import COINRUN_GROUP_NAMES  # code m = movement m

            return COINRUN_GROUP_NAMES.index("none")
        return None

    def guidance_reference(self) -> torch.Tensor:
        """The still action's vector (1, A) in the dynamics model's dtype; a one-line error for
        a world that does not know which action stands still."""
        code = self.still_action()
        if code is None:
            raise UserError(
                "action guidance needs the world's 'stand still' action: run `opengenie eval` "
                "on CoinRun data to write its action_map.json, or set guidance to 0"
            )
        vector = self.lam.action_vectors(torch.tensor([code], device=self.device))
        return vector.to(self.dynamics_dtype)

    # -- playing -------------------------------------------------------------------------
    def new_session(self) -> PlaySession:
        """An independent player of this World (own caches, RNG and sampling settings), e.g.
        one per browser tab; the weights are shared."""
        return PlaySession(self, dataclasses.replace(self.sampling))

    def _session(self) -> PlaySession:
        if self._default_session is None:
            self._default_session = PlaySession(self, self.sampling)
        return self._default_session

    def reset(self, prompt, seed: int | None = None) -> np.ndarray:
        """Start from one image (path, PIL image or (H, W, 3) uint8 array of any size: centre-
        cropped and resized). Returns the prompt as the tokenizer sees it, (H, W, 3) uint8."""
        return self._session().reset(prompt, seed)

    def step(self, action: int) -> np.ndarray:
        """Take latent action `action` (0-based) and return the next frame, (H, W, 3) uint8."""
        return self._session().step(action)

    def next_tokens(self, action: int) -> torch.Tensor:
        """Sample and commit the next frame's tokens (1, 1, h, w) without decoding them."""
        return self._session().next_tokens(action)

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
                atomic_write_json(tmp / "action_map.json", self.action_map)  # eval's format
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
        load_weights(path, world)
        if (path / "action_map.json").exists():
            world.action_map = read_action_map(path / "action_map.json")
        return world.to(device).eval()


class PlaySession:
    """One player's state in a World: key/value caches of the dynamics model and of the
    tokenizer's decoder, an RNG and sampling settings. A new frame costs only its own tokens."""

    def __init__(self, world: World, sampling: SamplingConfig) -> None:
        self.world = world
        self.sampling = sampling
        self.generator = torch.Generator(device=world.device)
        self.frames = 0  # frames produced since the last reset, the prompt included
        self._dyn_cache: KVCache | None = None
        self._dec_cache: KVCache | None = None

    @torch.no_grad()
    def reset(self, prompt, seed: int | None = None) -> np.ndarray:
        from opengenie.imageio import load_prompt

        world = self.world
        image = load_prompt(prompt, world.config.image_size)  # (H, W, 3) uint8
        if seed is not None:
            self.generator.manual_seed(seed)
        video = torch.from_numpy(image.copy()).to(world.device).float().div(255)[None, None]
        ids = world.tokenizer.encode(video)  # (1, 1, h, w)
        window = world.config.frames
        self._dyn_cache = world.dynamics.transformer.new_cache(window)
        self._dec_cache = world.tokenizer.decoder.new_cache(window)
        world.dynamics.commit(ids.flatten(2), None, self._dyn_cache)
        self.frames = 1
        return _to_uint8(world.tokenizer.decode(ids, self._dec_cache, update_cache=True))

    @torch.no_grad()
    def step(self, action: int) -> np.ndarray:
        ids = self.next_tokens(action)  # (1, 1, h, w)
        return _to_uint8(self.world.tokenizer.decode(ids, self._dec_cache, update_cache=True))

    @torch.no_grad()
    def next_tokens(self, action: int) -> torch.Tensor:
        """MaskGIT-sample the next frame's tokens through the cache and commit them."""
        world = self.world
        if self._dyn_cache is None:
            raise UserError("call reset(prompt) before step(action)")
        if not isinstance(action, (int, np.integer)) or not 0 <= action < world.num_actions:
            raise UserError(f"unknown action {action!r}: use an id in 0..{world.num_actions - 1}")
        grid = world.config.token_grid
        vector = world.lam.action_vectors(torch.tensor([int(action)], device=world.device))
        vector = vector.to(world.dynamics_dtype)
        cache, s = self._dyn_cache, self.sampling

        def action_logits(current: torch.Tensor, action: torch.Tensor = vector) -> torch.Tensor:
            return world.dynamics.step_logits(current[:, None], action, cache)[:, 0]

        logits_fn = action_logits
        if s.guidance and action != world.still_action():  # standing still: its own reference
            still = world.guidance_reference()
            logits_fn = guided(action_logits, lambda cur: action_logits(cur, still), s.guidance)
        tokens = maskgit_fill(
            logits_fn,
            1,
            grid * grid,
            world.dynamics.mask_id,
            s.steps,
            s.temperature,
            s.mode,
            self.generator,
            world.device,
            s.min_p,
        )
        world.dynamics.commit(tokens[:, None], vector, cache, s.context_mask)
        self.frames += 1
        return tokens.view(1, 1, grid, grid)


def read_checkpoint_config(path: Path, expected_format: str) -> GenieConfig:
    """Read a checkpoint's config.json, with one-line errors for the usual mix-ups and for a
    damaged file (not JSON, not an object, fields of the wrong type or out of range)."""
    if not path.is_dir():
        raise UserError(f"{path} is not a directory: pass a {expected_format} directory")
    meta_path = path / "config.json"
    if not meta_path.exists():
        hint = " (it is a data set)" if (path / "dataset.json").exists() else ""
        raise UserError(f"{path} has no config.json{hint}: pass a {expected_format} directory")
    redo = "copy the directory again or re-save it"
    meta = _read_json(meta_path, redo)
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path} is not a checkpoint config (a JSON object): {redo}")
    found = meta.get("format")
    if found != expected_format:
        raise UserError(f"{path} holds a {found or 'unknown'} checkpoint, not a {expected_format}")
    if not isinstance(meta.get("config"), dict):
        raise UserError(f'{meta_path} has no "config" object: {redo}')
    try:
        return GenieConfig.from_dict(meta["config"])
    except UserError as error:
        raise UserError(f"{meta_path}: {error}; {redo}") from None
    except (TypeError, ValueError, ArithmeticError) as error:  # what the checks above missed
        raise UserError(f"{meta_path} holds a bad config ({error}): {redo}") from None


def load_weights(
    directory: Path, model: nn.Module, prefix: str = "", optional: tuple[str, ...] = ()
) -> None:
    """Load DIR/model.safetensors (optionally only the weights under `prefix.`) into `model`,
    with one-line errors for a missing or damaged file and for weights that do not fit the
    model (missing, unexpected or mis-shaped tensors). Weights whose names start with one of
    `optional` may be missing (they keep their fresh values) or left over (dropped): e.g. a
    label head that one run has and the next does not."""
    path = Path(directory) / "model.safetensors"
    redo = "copy the directory again or re-save it"
    if not path.is_file():
        raise UserError(f"{path} is missing: {redo}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(
            f"{path} is not a readable safetensors file ({reason}): it may be truncated or "
            f"damaged; {redo}"
        ) from None
    if prefix:
        state = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
    expected = model.state_dict()
    if optional:
        state = {k: v for k, v in state.items() if k in expected or not k.startswith(optional)}
        state.update(
            {k: v for k, v in expected.items() if k not in state and k.startswith(optional)}
        )
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    shared = expected.keys() & state.keys()
    misfit = sorted(k for k in shared if state[k].shape != expected[k].shape)
    if missing or unexpected or misfit:
        problems = [
            _some(f"{len(missing)} missing", missing),
            _some(f"{len(unexpected)} unexpected", unexpected),
            _some(
                f"{len(misfit)} of another shape (file vs config)",
                [f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}" for k in misfit],
            ),
        ]
        raise UserError(
            f"{path} does not fit the model {path.parent / 'config.json'} describes "
            f"({'; '.join(p for p in problems if p)}): the two files come from different "
            f"models; {redo}"
        )
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state)


def read_action_map(path: Path) -> dict:
    """Read a World's action_map.json (written by eval: "names" {id: name}, "keys" {key: id})."""
    redo = "delete it (play then numbers the actions) or rerun `opengenie eval` to rewrite it"
    amap = _read_json(path, redo)
    names, keys = (amap.get(k, {}) if isinstance(amap, dict) else None for k in ("names", "keys"))
    if not (
        isinstance(names, dict)
        and all(isinstance(v, str) for v in names.values())
        and isinstance(keys, dict)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in keys.values())
    ):
        raise UserError(
            f'{path} is not an action map (an object with "names": {{id: name}} and '
            f'"keys": {{key: id}}): {redo}'
        )
    return amap


def _read_json(path: Path, redo: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not JSON text (not UTF-8): {redo}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error}): {redo}") from None
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror or error}): {redo}") from None


def _some(head: str, names: list[str], shown: int = 3) -> str:
    """'2 missing: a, b' / '5 unexpected: a, b, c, ...' / '' when there are none."""
    if not names:
        return ""
    return f"{head}: {', '.join(names[:shown])}{', ...' if len(names) > shown else ''}"


def _default_modes(tree: Path) -> None:
    """Give a staged tree the modes plain mkdir/open would (mkdtemp makes 0700, safetensors
    0600): a saved world or checkpoint is as readable as any other file the user writes."""
    umask = os.umask(0)
    os.umask(umask)
    for path in (tree, *tree.rglob("*")):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` into place as `target`; an old `target` is only removed once `new` is in."""
    _default_modes(new)
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
