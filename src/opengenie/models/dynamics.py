"""The dynamics model: a decoder-only MaskGIT ST-transformer over video tokens (paper §2.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from opengenie.config import GenieConfig
from opengenie.nn import KVCache, STTransformer


class Dynamics(nn.Module):
    """Predicts each frame's tokens from earlier frames and the latent action that led to it.

    The action a_{t-1} (the LAM's code vector, gradient stopped) conditions frame t: added to
    every token of that frame (`action_mode="add"`, the paper's) or prepended to it as one
    extra token (`"token"`). Frame 0 gets a learned "no action yet" vector instead.
    """

    def __init__(self, config: GenieConfig) -> None:
        super().__init__()
        cfg = config.dynamics
        self.num_codes = config.tokenizer.quantizer.num_codes
        self.mask_id = self.num_codes  # the extra embedding row is the learned mask token
        self.action_mode = cfg.action_mode
        self.mask_rate = (cfg.mask_rate_min, cfg.mask_rate_max)
        self.clean_context = cfg.clean_context
        self.context_noise = cfg.context_noise
        self.changed_weight = cfg.changed_weight
        # (V, k) each code's k nearest codes, the context noise's choices; set from the
        # tokenizer's codebook by `set_noise_neighbours` (empty: any code)
        self.register_buffer("noise_codes", torch.empty(0, 0, dtype=torch.long), persistent=False)
        tokens = config.token_grid**2 + (1 if cfg.action_mode == "token" else 0)
        self.token_emb = nn.Embedding(self.num_codes + 1, cfg.dim)
        self.pos = nn.Parameter(torch.randn(tokens, cfg.dim) * 0.02)  # (N[+1], D), added once
        self.action_in = nn.Linear(config.lam.quantizer.code_dim, cfg.dim)
        self.first_action = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.transformer = STTransformer(cfg.dim, cfg.depth, cfg.heads, cfg.ffn, cfg.qk_norm)
        self.head = nn.Linear(cfg.dim, self.num_codes)

    def _forward(
        self,
        tokens: torch.Tensor,
        action_emb: torch.Tensor,
        cache: KVCache | None = None,
        update_cache: bool = False,
    ) -> torch.Tensor:
        """tokens (B, T, N) with mask ids; action_emb (B, T, D) -> logits (B, T, N, V)."""
        h = self.transformer(self._embed(tokens, action_emb), cache, update_cache)
        return self.head(h[:, :, 1:] if self.action_mode == "token" else h)

    def _embed(self, tokens: torch.Tensor, action_emb: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, N), action_emb (B, T, D) -> the transformer's input (B, T, N[+1], D)."""
        x = self.token_emb(tokens)  # (B, T, N, D)
        if self.action_mode == "token":
            return torch.cat((action_emb[:, :, None], x), dim=2) + self.pos  # (B, T, N+1, D)
        return x + self.pos + action_emb[:, :, None]

    def logits(self, tokens: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """A whole clip: tokens (B, T, N), actions (B, T-1, A) -> logits (B, T, N, V)."""
        b = tokens.shape[0]
        first = self.first_action.expand(b, 1, -1)
        emb = torch.cat((first, self.action_in(actions.detach())), dim=1)  # (B, T, D)
        return self._forward(tokens, emb)

    def step_logits(
        self,
        tokens: torch.Tensor,
        action: torch.Tensor | None,
        cache: KVCache,
        update_cache: bool = False,
    ) -> torch.Tensor:
        """One new frame after the cached ones: tokens (B, 1, N), action (B, A) or None for the
        first frame -> logits (B, 1, N, V). `update_cache` once the frame's tokens are final."""
        emb = self._step_action(action, tokens.shape[0])
        return self._forward(tokens, emb, cache, update_cache)

    def _step_action(self, action: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The embedding (B, 1, D) of the action leading into one new frame."""
        if action is None:
            return self.first_action.expand(batch, 1, -1)
        return self.action_in(action)[:, None]

    def commit(
        self,
        tokens: torch.Tensor,
        action: torch.Tensor | None,
        cache: KVCache,
        context_mask: float = 0.0,
    ) -> None:
        """Append a final frame, tokens (B, 1, N) reached by action (B, A) (None: the first
        frame), to the cache as later frames are to see it (`hide_context` with the sampler's
        `context_mask`), with no logits."""
        emb = self._step_action(action, tokens.shape[0])  # (B, 1, D)
        if action is not None:
            tokens = self.hide_context(tokens, cache.next_pos, context_mask)
        self.transformer.commit(self._embed(tokens, emb), cache)

    def hide_context(self, tokens: torch.Tensor, first: int, share: float) -> torch.Tensor:
        """Context frames (B, T, N), the first of them frame number `first`, as the model is to
        see them: a `share` of each frame's tokens (none of frame 0's) replaced by
        the mask token, as training hides them. The pattern depends on the frame's number only
        (every row of a batch alike), so rollouts are reproducible, do not depend on how clips
        are batched, and the cached and recomputed ones agree."""
        if not share:  # the sampler's context_mask (SamplingConfig): 0 shows whole frames
            return tokens
        _, t, n = tokens.shape
        hidden = torch.zeros(t, n, dtype=torch.bool)  # (T, N): one pattern for every row
        for i in range(max(0, 1 - first), t):
            pattern = torch.Generator().manual_seed(first + i)
            hidden[i] = torch.rand(n, generator=pattern) < share
        return tokens.masked_fill(hidden.to(tokens.device), self.mask_id)  # broadcast over B

    def set_noise_neighbours(self, codebook: torch.Tensor, k: int) -> None:
        """Context noise draws among each code's k nearest (L2) in codebook (V, C) (0: any)."""
        if not k:
            self.noise_codes = self.noise_codes.new_empty(0, 0)
            return
        dist = torch.cdist(codebook.float(), codebook.float())  # (V, V)
        dist.fill_diagonal_(float("inf"))  # a swapped token is always a wrong one
        self.noise_codes = dist.topk(k, dim=-1, largest=False).indices.to(self.noise_codes.device)

    def _noise_codes(self, tokens: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A wrong code for every token (B, T, N): a near one (`set_noise_neighbours`) or any."""
        if not self.noise_codes.numel():
            return torch.randint(
                self.num_codes, tokens.shape, generator=generator, device=tokens.device
            )
        k = self.noise_codes.shape[1]
        pick = torch.randint(k, tokens.shape, generator=generator, device=tokens.device)
        return self.noise_codes[tokens, pick]  # (B, T, N)

    def masked_loss(
        self, tokens: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict:
        """MaskGIT training loss on a clip: tokens (B, T, N), actions (B, T-1, A).

        Each sample draws its own mask rate from U(min, max) (Jasmine #101); frame 0 is never
        masked (it is the context), nor is a share `clean_context` of the other frames (whole
        context, as in play); cross-entropy counts masked tokens only, those that changed since
        the frame before weighted by `changed_weight`.
        """
        b, t, n = tokens.shape
        low, high = self.mask_rate
        device = tokens.device
        rate = low + (high - low) * torch.rand(b, generator=generator, device=device)
        mask = torch.rand(b, t, n, generator=generator, device=device) < rate[:, None, None]
        mask[:, 0] = False
        if self.clean_context:
            clean = torch.rand(b, t, generator=generator, device=device) < self.clean_context
            clean[:, -1] &= ~clean[:, 1:-1].all(dim=1)  # some frame of each clip stays a target
            mask &= ~clean[:, :, None]
        inputs = tokens.masked_fill(mask, self.mask_id)  # (B, T, N)
        if self.context_noise:
            share = self.context_noise * torch.rand(b, generator=generator, device=device)
            swap = torch.rand(b, t, n, generator=generator, device=device) < share[:, None, None]
            swap[:, 0] = False  # the prompt is a real frame in play too
            inputs = torch.where(swap & ~mask, self._noise_codes(tokens, generator), inputs)
        logits = self.logits(inputs, actions)  # (B, T, N, V)
        picked, target = logits[mask].float(), tokens[mask]
        if self.changed_weight == 1.0:
            loss = F.cross_entropy(picked, target)
        else:  # tokens that changed since the frame before (frame 0 is never a target)
            changed = torch.zeros_like(mask)
            changed[:, 1:] = tokens[:, 1:] != tokens[:, :-1]  # (B, T, N)
            weight = torch.where(changed[mask], self.changed_weight, 1.0)  # (M,)
            per_token = F.cross_entropy(picked, target, reduction="none")  # (M,)
            loss = (per_token * weight).sum() / weight.sum().clamp(min=1e-9)
        accuracy = (picked.argmax(-1) == target).float().mean()
        return {"loss": loss, "accuracy": accuracy, "mask": mask, "mask_rate": rate}
