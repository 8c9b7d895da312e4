"""The spatiotemporal (ST) transformer that all three Genie models are built on.

Each block: spatial self-attention over the tokens of one frame, then causal temporal
self-attention over the frames at one spatial position, then ONE feed-forward (paper §2.1).
Positions: the models add a learned spatial embedding once at the input; time is encoded by
rotary embeddings (RoPE) inside the temporal attention, so scores depend only on how far apart
two frames are. That lets play keep a key/value cache and slide it past the training window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

Rope = tuple[torch.Tensor, torch.Tensor]  # cos, sin: each (L, hd/2)


def rotary_table(
    positions: torch.Tensor, head_dim: int, dtype: torch.dtype, base: float = 10_000.0
) -> Rope:
    """cos and sin of RoPE's angles for these positions: computed once per forward pass and
    shared by every block (they depend only on the positions)."""
    half = head_dim // 2
    arange = torch.arange(half, device=positions.device, dtype=torch.float32)
    freqs = base ** (-arange / half)  # (hd/2,)
    angles = positions.to(torch.float32)[:, None] * freqs[None, :]  # (L, hd/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate pairs of channels of x (..., L, hd) by the table's angles (half-split pairing)."""
    cos, sin = rope
    if cos.dtype != x.dtype:  # under autocast the table follows the block's input, q/k do not
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def _math_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Attention as two bf16 matmuls with an fp32 softmax, for bf16 on CPU.

    PyTorch's CPU flash kernel is 3-9x slower in bf16 than in fp32 (its backward most of all),
    while these bf16 matmuls beat the fp32 kernel ~2x at our sizes (bench: docs/TRAINING.md).
    q: (B, h, Lq, hd), k/v: (B, h, Lk, hd); mask: (Lq, Lk) bool, True = may attend.
    """
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (B, h, Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.float().softmax(-1).to(v.dtype) @ v  # (B, h, Lq, hd)


class QKNorm(nn.Module):
    """RMS norm over each head's channels, run in the input's dtype (fused under bf16 autocast,
    where nn.RMSNorm's fp32 weight would force the slow path)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


class Attention(nn.Module):
    """Multi-head self-attention through `scaled_dot_product_attention`, optional QK-norm."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # QK-norm (paper: used for stability); normalises each head's queries and keys.
        self.q_norm = QKNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = QKNorm(self.head_dim) if qk_norm else nn.Identity()

    def project(
        self, x: torch.Tensor, rope: Rope | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, L, D) -> q, k, v each (B, heads, L, hd); rotary applied when a table given."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        return q, k, v

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, window: int = 0
    ) -> torch.Tensor:
        """q: (B, h, Lq, hd), k/v: (B, h, Lk, hd) -> (B, Lq, D). Causal aligns the query ends;
        `window` > 0 (causal only) also hides keys more than window - 1 positions back."""
        lq, lk = q.shape[-2], k.shape[-2]
        banded = causal and 0 < window < lk
        causal = causal and (lq > 1 or banded)
        bf16_cpu = q.device.type == "cpu" and q.dtype == torch.bfloat16
        if causal and lq == lk and not bf16_cpu and not banded:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # no mask to build
        else:
            # Queries are the last lq of lk positions (earlier ones come from a cache).
            mask = None
            if causal:
                ones = torch.ones(lq, lk, dtype=torch.bool, device=q.device)
                mask = ones.tril(lk - lq)
                if banded:  # key j is visible to query i when i - window < j <= i
                    mask &= ~ones.tril(lk - lq - window)
            if bf16_cpu:
                y = _math_attention(q, k, v, mask)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        q, k, v = self.project(x, None)
        return self.attend(q, k, v, causal)


@dataclass
class KVCache:
    """Temporal keys/values of past frames, per block, for frame-by-frame generation.

    Tensors are (B*N, heads, T_past, hd). `next_pos` is the absolute temporal position of the
    next frame; `window` bounds how many frames a query sees (itself included): older entries
    are dropped, and since RoPE scores depend only on distance, the rest stay valid.
    """

    window: int
    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)
    next_pos: int = 0

    @property
    def length(self) -> int:
        return 0 if not self.keys or self.keys[0] is None else self.keys[0].shape[-2]


class STBlock(nn.Module):
    """Spatial attention -> causal temporal attention -> one feed-forward, all pre-norm."""

    def __init__(
        self, dim: int, heads: int, ffn: int, qk_norm: bool = True, window: int = 0
    ) -> None:
        super().__init__()
        self.window = window  # > 0: temporal attention sees only this many latest frames
        self.norm_s = nn.LayerNorm(dim)
        self.spatial = Attention(dim, heads, qk_norm)
        self.norm_t = nn.LayerNorm(dim)
        self.temporal = Attention(dim, heads, qk_norm)
        self.norm_f = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))

    def forward(
        self,
        x: torch.Tensor,
        rope: Rope,
        cache: KVCache | None = None,
        layer: int = 0,
        update_cache: bool = False,
        kv_only: bool = False,
    ) -> torch.Tensor:
        """x: (B, T, N, D) -> (B, T, N, D). `kv_only` (with update_cache): only store this
        block's temporal keys/values and return x early: what the last block of a commit
        pass needs, since no later layer reads its output."""
        b, t, n, d = x.shape  # (B, T, N, D)
        # Spatial: the N tokens of each frame attend to each other; frames never mix.
        x = x + self.spatial(self.norm_s(x).reshape(b * t, n, d)).view(b, t, n, d)
        # Temporal: each spatial position attends to itself in earlier frames (causal).
        y = self.norm_t(x).transpose(1, 2).reshape(b * n, t, d)  # (B*N, T, D)
        q, k, v = self.temporal.project(y, rope)
        if cache is not None and cache.keys[layer] is not None:
            k = torch.cat((cache.keys[layer], k), dim=-2)
            v = torch.cat((cache.values[layer], v), dim=-2)
            keep = max(cache.window, t)  # each query sees at most `window` frames
            k, v = k[..., -keep:, :], v[..., -keep:, :]
        if cache is not None and update_cache:
            keep = cache.window - 1  # room for the next frame
            cache.keys[layer] = k[..., -keep:, :] if keep > 0 else k[..., :0, :]
            cache.values[layer] = v[..., -keep:, :] if keep > 0 else v[..., :0, :]
            if kv_only:
                return x
        y = self.temporal.attend(q, k, v, causal=True, window=self.window)  # (B*N, T, D)
        x = x + y.view(b, n, t, d).transpose(1, 2)
        return x + self.ffn(self.norm_f(x))


class STTransformer(nn.Module):
    """L ST-blocks mapping (B, T, N, D) -> (B, T, N, D), causal in time, with a final norm."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        ffn: int | None = None,
        qk_norm: bool = True,
        window: int = 0,
    ) -> None:
        super().__init__()
        self.dim, self.depth, self.window = dim, depth, window
        self.blocks = nn.ModuleList(
            STBlock(dim, heads, ffn or 4 * dim, qk_norm, window) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def new_cache(self, window: int) -> KVCache:
        # A model that never looks further back than its own window needs no more cache.
        window = min(window, self.window) if self.window > 0 else window
        return KVCache(window=window, keys=[None] * self.depth, values=[None] * self.depth)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, update_cache: bool = False
    ) -> torch.Tensor:
        """x: (B, T, N, D). With a cache, x holds only the newest frame(s) after those cached;
        `update_cache` appends their keys/values (do it once a frame is final)."""
        rope = self._rope(x, cache)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, cache, i, update_cache)
        if cache is not None and update_cache:
            cache.next_pos += x.shape[1]
        return self.norm(x)

    def commit(self, x: torch.Tensor, cache: KVCache) -> None:
        """Append final frames x (B, T, N, D) to the cache without computing an output: the
        last block stops once its keys/values are stored (~0.9 ms of a 8.6 ms pass, measured)."""
        rope = self._rope(x, cache)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, cache, i, update_cache=True, kv_only=i == self.depth - 1)
        cache.next_pos += x.shape[1]

    def _rope(self, x: torch.Tensor, cache: KVCache | None) -> Rope:
        start = cache.next_pos if cache is not None else 0
        positions = torch.arange(start, start + x.shape[1], device=x.device)
        head_dim = self.blocks[0].temporal.head_dim
        return rotary_table(positions, head_dim, x.dtype)
