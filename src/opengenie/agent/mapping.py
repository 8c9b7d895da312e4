"""From latent actions to the game's actions, learned from a few labelled transitions.

The paper's dictionary (App. E): each latent code keeps the list of real actions seen with it in
the labelled set, and at test time a real action is drawn from its list. A code that no labelled
transition has draws from all labelled actions. The option "decoder" instead fits a softmax
regression from the code's vector in the LAM's codebook to the real action, so that codes share
what the labels say about codes near them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from opengenie.data.coinrun import NUM_ACTIONS

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads MAPPINGS at startup
    import torch

MAPPINGS = ("dictionary", "decoder")


def pair_counts(codes: np.ndarray, actions: np.ndarray, num_codes: int) -> np.ndarray:
    """(num_codes, NUM_ACTIONS) int: how often each latent code went with each real action."""
    counts = np.zeros((num_codes, NUM_ACTIONS), dtype=np.int64)
    np.add.at(counts, (codes, actions), 1)
    return counts


class LatentToReal:
    """probs[code] = the distribution of real actions drawn for a latent code, (codes, 15)."""

    def __init__(self, probs: np.ndarray, kind: str = "dictionary") -> None:
        self.probs, self.kind = np.asarray(probs, dtype=np.float64), kind

    @classmethod
    def fit(
        cls,
        codes: np.ndarray,
        actions: np.ndarray,
        num_codes: int,
        kind: str = "dictionary",
        code_vectors: torch.Tensor | None = None,
    ) -> LatentToReal:
        """codes, actions (N,) of the labelled transitions -> the mapping."""
        if len(codes) == 0:
            raise ValueError("the mapping needs at least one labelled transition")
        counts = pair_counts(codes, actions, num_codes).astype(np.float64)
        if kind == "decoder":
            if code_vectors is None:
                raise ValueError("the decoder mapping needs the LAM's code vectors")
            return cls(_fit_decoder(counts, code_vectors), kind)
        prior = counts.sum(0) / counts.sum()  # unseen codes: any labelled action
        seen = counts.sum(1, keepdims=True)
        probs = np.where(seen > 0, counts / np.maximum(seen, 1), prior)
        return cls(probs, kind)

    def sample(self, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Latent codes (B,) -> real Procgen action ids (B,), drawn from each code's list."""
        cum = self.probs[codes].cumsum(1)  # (B, 15)
        u = rng.random((len(codes), 1)) * cum[:, -1:]
        return (u > cum).sum(1).astype(np.int64)

    def to_json(self) -> dict:
        return {"kind": self.kind, "probs": self.probs.round(6).tolist()}

    @classmethod
    def from_json(cls, data: dict) -> LatentToReal:
        probs = np.asarray(data["probs"], dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != NUM_ACTIONS or (probs < 0).any():
            raise ValueError(f"a mapping is ({NUM_ACTIONS}) probabilities per code")
        return cls(probs, str(data.get("kind", "dictionary")))


def _fit_decoder(counts: np.ndarray, code_vectors: torch.Tensor, steps: int = 300) -> np.ndarray:
    """Softmax regression from code vectors (codes, D) to actions, on the labelled counts."""
    import torch
    import torch.nn.functional as F

    x = F.normalize(code_vectors.detach().float(), dim=-1)  # (codes, D)
    target = torch.as_tensor(counts, dtype=torch.float32)  # (codes, 15)
    weight = torch.zeros(x.shape[1], NUM_ACTIONS, requires_grad=True)
    bias = torch.zeros(NUM_ACTIONS, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=0.1)
    for _ in range(steps):
        logp = F.log_softmax(x @ weight + bias, dim=-1)  # (codes, 15)
        loss = -(target * logp).sum() / target.sum() + 1e-3 * weight.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return F.softmax(x @ weight + bias, dim=-1).detach().numpy()
