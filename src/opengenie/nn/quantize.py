"""Discrete bottlenecks: a vector quantizer (VQ-VAE style) and finite scalar quantization (FSQ).

Both map continuous vectors (..., d_in) to (quantized (..., d_in), ids (...), loss, stats) and
pass gradients straight through to the encoder. Both expose `codebook()` (K, d) and
`lookup(ids)` so that a user's choice of id can replace the encoder (play needs only this).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class VectorQuantizer(nn.Module):
    """Nearest-code VQ on L2-normalised vectors with a straight-through estimator.

    loss = ||sg(z) - q||^2 + beta * ||z - sg(q)||^2. Codes unused for `dead_code_steps`
    training steps are re-initialised to random encoder outputs of the current batch, which
    stops the codebook collapsing onto a few codes (Jafar #5).
    """

    def __init__(self, codes: int, dim: int, beta: float = 0.25, dead_code_steps: int = 50):
        super().__init__()
        self.num_codes, self.dim, self.beta = codes, dim, beta
        self.dead_code_steps = dead_code_steps
        self.embedding = nn.Parameter(torch.randn(codes, dim))
        # Steps since each code was last chosen; a buffer so it is saved and restored.
        self.register_buffer("unused_steps", torch.zeros(codes, dtype=torch.long))

    def codebook(self) -> torch.Tensor:
        return F.normalize(self.embedding, dim=-1)  # (K, d)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codebook()[ids]  # (..., d)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        z = F.normalize(z.float(), dim=-1)  # (..., d)
        flat = z.reshape(-1, self.dim)  # (M, d)
        codebook = self.codebook()
        with torch.autocast(flat.device.type, enabled=False):  # bf16 would blur near-ties
            ids = (flat @ codebook.t()).argmax(-1)  # cosine similarity on unit vectors
        q = codebook[ids]  # (M, d)
        loss = F.mse_loss(q, flat.detach()) + self.beta * F.mse_loss(flat, q.detach())
        counts = torch.bincount(ids, minlength=self.num_codes)
        if self.training and self.dead_code_steps > 0:
            self._reset_dead_codes(flat.detach(), counts)
        q = flat + (q - flat).detach()  # straight-through: gradients go to the encoder
        return q.view_as(z), ids.view(z.shape[:-1]), loss, _usage_stats(counts)

    @torch.no_grad()
    def _reset_dead_codes(self, flat: torch.Tensor, counts: torch.Tensor) -> None:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if distributed:  # every rank must agree on which codes are dead
            counts = counts.clone()
            dist.all_reduce(counts)
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        dead = (self.unused_steps >= self.dead_code_steps).nonzero().squeeze(-1)
        if dead.numel() == 0:
            return
        picks = torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)
        self.embedding.data[dead] = flat[picks].to(self.embedding.dtype)
        if distributed:  # rank 0's choice wins, so the replicas stay identical
            dist.broadcast(self.embedding.data, src=0)
        self.unused_steps[dead] = 0


class FSQ(nn.Module):
    """Finite scalar quantization (Mentzer et al., 2023): round each of a few bounded channels.

    The input is projected to len(levels) channels, squashed with tanh into each channel's range
    and rounded (straight-through). The implicit codebook is the grid of all level combinations;
    there is nothing to collapse and no auxiliary loss.
    """

    def __init__(self, levels: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.levels = tuple(levels)
        self.dim = dim
        self.num_codes = 1
        for level in self.levels:
            self.num_codes *= level
        self.project_in = nn.Linear(dim, len(self.levels))
        self.project_out = nn.Linear(len(self.levels), dim)
        self.register_buffer("_levels", torch.tensor(self.levels, dtype=torch.float32))
        basis = torch.cumprod(torch.tensor((1, *self.levels[:-1]), dtype=torch.long), dim=0)
        self.register_buffer("_basis", basis)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        # Odd levels: round(tanh * half) in [-half, half]; even levels shifted by 0.5. The shift
        # (tan, as in the FSQ paper's code) centres the even-level grid; eps keeps it finite.
        half = (self._levels - 1) * (1 - 1e-3) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.tan(offset / half)
        return torch.tanh(z + shift) * half - offset

    def _grid_to_ids(self, grid: torch.Tensor) -> torch.Tensor:
        # Grid values run from -(level // 2) to level - 1 - level // 2: shift them to 0..level-1.
        digits = (grid + self._levels // 2).round().long()
        return (digits * self._basis).sum(-1)

    def _ids_to_grid(self, ids: torch.Tensor) -> torch.Tensor:
        digits = (ids[..., None] // self._basis) % self._levels.long()
        return digits.float() - self._levels // 2

    def codebook(self) -> torch.Tensor:
        return self.lookup(torch.arange(self.num_codes, device=self._basis.device))  # (K, d)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        return self.project_out(self._ids_to_grid(ids) / (self._levels // 2))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        bounded = self._bound(self.project_in(z.float()))  # (..., len(levels))
        grid = bounded + (bounded.round() - bounded).detach()  # straight-through rounding
        ids = self._grid_to_ids(grid.detach())
        q = self.project_out(grid / (self._levels // 2))
        counts = torch.bincount(ids.reshape(-1), minlength=self.num_codes)
        return q, ids, z.new_zeros(()), _usage_stats(counts)


def _usage_stats(counts: torch.Tensor) -> dict:
    """Codes used and perplexity, as 0-dim tensors (no host sync: torch.compile keeps one graph)."""
    probs = counts.float() / counts.sum().clamp(min=1)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum()
    return {"codes_used": (counts > 0).sum(), "perplexity": entropy.exp()}


def build_quantizer(cfg, dim: int) -> nn.Module:
    """A quantizer from a `QuantizerConfig`; `dim` is the width of the vectors it receives."""
    if cfg.kind == "fsq":
        return FSQ(cfg.fsq_levels, dim)
    return VectorQuantizer(cfg.codes, dim, cfg.beta, cfg.dead_code_steps)
