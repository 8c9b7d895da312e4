"""An Agent: a behaviour-cloned policy over a World's latent actions, the latent -> real mapping,
and (for comparison) the oracle cloned on the real actions, saved as one directory
(config.json + model.safetensors), like a World.

Acting: every `frame_skip` game frames (one world step) the policy samples a latent action from
the last frames, the mapping draws a real action for it, and the game holds that action until
the next world step.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from opengenie.agent.mapping import LatentToReal
from opengenie.agent.policy import FramePolicy
from opengenie.errors import UserError
from opengenie.models.world import _read_json, _replace_dir, load_weights

AGENT_FORMAT = "opengenie-agent"
SHIPPED_AGENT = Path(__file__).resolve().parent.parent / "assets" / "coinrun_agent"


@dataclass
class Agent:
    policy: FramePolicy  # latent actions
    mapping: LatentToReal
    frame_skip: int  # game frames per world step (the world's)
    oracle: FramePolicy | None = None  # real actions, same architecture
    info: dict = field(default_factory=dict)  # how it was trained (labels, world, data, losses)

    @torch.no_grad()
    def latent_actions(self, frames: torch.Tensor, generator: torch.Generator) -> np.ndarray:
        """frames uint8 (B, K, H, W, 3) -> sampled latent codes (B,)."""
        return _sample(self.policy(frames), generator)

    def act(
        self, frames: torch.Tensor, generator: torch.Generator, rng: np.random.Generator
    ) -> np.ndarray:
        """frames uint8 (B, K, H, W, 3) -> Procgen action ids (B,) through the latent actions."""
        return self.mapping.sample(self.latent_actions(frames, generator), rng)

    @torch.no_grad()
    def oracle_act(self, frames: torch.Tensor, generator: torch.Generator) -> np.ndarray:
        """The oracle's Procgen action ids (B,) for frames (B, K, H, W, 3)."""
        if self.oracle is None:
            raise UserError("this agent was saved without its oracle")
        return _sample(self.oracle(frames), generator)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write config.json + model.safetensors atomically to `directory` (it replaces the
        whole directory, as World.save does: keep a model card elsewhere until it is saved)."""
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            meta = {
                "format": AGENT_FORMAT,
                "version": 1,
                "policy": self.policy.config(),
                "oracle": self.oracle.config() if self.oracle is not None else None,
                "frame_skip": self.frame_skip,
                "mapping": self.mapping.to_json(),
                "info": self.info,
            }
            (tmp / "config.json").write_text(json.dumps(meta, indent=2))
            nets = {"policy": self.policy, "oracle": self.oracle}
            tensors = {
                f"{name}.{k}": v.contiguous()
                for name, net in nets.items()
                if net is not None
                for k, v in net.state_dict().items()
            }
            save_file(tensors, str(tmp / "model.safetensors"))
            _replace_dir(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike | None = None) -> Agent:
        """Load an Agent directory; with no path, the CoinRun agent shipped in the package."""
        path = Path(directory) if directory is not None else SHIPPED_AGENT
        redo = "copy the directory again or train it again"
        if not path.is_dir():
            raise UserError(f"{path} is not a directory: pass an {AGENT_FORMAT} directory")
        if not (path / "config.json").is_file():
            hint = " (it is a world)" if (path / "action_map.json").exists() else ""
            raise UserError(f"{path} has no config.json{hint}: pass an {AGENT_FORMAT} directory")
        meta = _read_json(path / "config.json", redo)
        if not isinstance(meta, dict) or meta.get("format") != AGENT_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise UserError(f"{path} holds a {found or 'unknown'} checkpoint, not an agent")
        try:
            policy = FramePolicy(**meta["policy"])
            oracle = FramePolicy(**meta["oracle"]) if meta.get("oracle") else None
            mapping = LatentToReal.from_json(meta["mapping"])
            frame_skip = int(meta["frame_skip"])
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(
                f"{path}/config.json is not an agent config ({error}): {redo}"
            ) from None
        if mapping.probs.shape[0] != policy.classes:
            raise UserError(f"{path}: the mapping's codes do not match the policy's: {redo}")
        load_weights(path, policy, prefix="policy")
        if oracle is not None:
            load_weights(path, oracle, prefix="oracle")
        agent = cls(policy.eval(), mapping, frame_skip, oracle, meta.get("info") or {})
        if oracle is not None:
            oracle.eval()
        return agent


def _sample(logits: torch.Tensor, generator: torch.Generator) -> np.ndarray:
    """One class per row drawn from softmax(logits (B, classes)): the paper samples its policy."""
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0].numpy()
