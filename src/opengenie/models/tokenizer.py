"""The video tokenizer: an ST-ViViT VQ-VAE that turns frames into discrete tokens and back."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from opengenie.config import GenieConfig
from opengenie.nn import KVCache, STTransformer, build_quantizer
from opengenie.nn.patches import patchify, unpatchify


class VideoTokenizer(nn.Module):
    """patchify -> ST encoder (causal in time) -> quantizer -> ST decoder -> sigmoid -> unpatchify.

    Videos are float (B, T, H, W, C) in [0, 1]; token ids are (B, T, h, w).
    """

    def __init__(self, config: GenieConfig) -> None:
        super().__init__()
        cfg = config.tokenizer
        self.patch, self.grid = cfg.patch, config.image_size // cfg.patch
        tokens, pixels = self.grid**2, cfg.patch**2 * config.channels
        code_dim = cfg.quantizer.code_dim
        self.enc_in = nn.Linear(pixels, cfg.dim)
        self.enc_pos = nn.Parameter(torch.randn(tokens, cfg.dim) * 0.02)  # (N, D), added once
        window = cfg.temporal_window
        self.encoder = STTransformer(
            cfg.dim, cfg.enc_depth, cfg.heads, cfg.ffn, cfg.qk_norm, window=window
        )
        self.enc_out = nn.Linear(cfg.dim, code_dim)
        self.quantizer = build_quantizer(cfg.quantizer, code_dim)
        self.dec_in = nn.Linear(code_dim, cfg.dim)
        self.dec_pos = nn.Parameter(torch.randn(tokens, cfg.dim) * 0.02)
        self.decoder = STTransformer(
            cfg.dim, cfg.dec_depth, cfg.heads, cfg.ffn, cfg.qk_norm, window=window
        )
        self.dec_out = nn.Linear(cfg.dim, pixels)

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes

    def _latents(self, video: torch.Tensor) -> torch.Tensor:
        x = self.enc_in(patchify(video, self.patch)) + self.enc_pos  # (B, T, N, D)
        return self.enc_out(self.encoder(x))  # (B, T, N, code_dim)

    def _decode_vectors(
        self, q: torch.Tensor, cache: KVCache | None = None, update_cache: bool = False
    ) -> torch.Tensor:
        x = self.dec_in(q) + self.dec_pos  # (B, T, N, D)
        patches = self.dec_out(self.decoder(x, cache, update_cache))  # (B, T, N, P*P*C)
        return torch.sigmoid(unpatchify(patches.float(), self.patch, self.grid, self.grid))

    def forward(self, video: torch.Tensor) -> dict:
        """Reconstruct a clip; returns the loss (MSE + quantizer loss) and what to log."""
        q, ids, q_loss, stats = self.quantizer(self._latents(video))
        recon = self._decode_vectors(q)  # (B, T, H, W, C)
        mse = F.mse_loss(recon, video)
        return {"loss": mse + q_loss, "mse": mse, "recon": recon, "ids": ids, **stats}

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) float in [0, 1] -> token ids (B, T, h, w)."""
        training = self.training
        self.eval()  # never reset codes while encoding
        _, ids, _, _ = self.quantizer(self._latents(video))
        self.train(training)
        return ids.view(*video.shape[:2], self.grid, self.grid)

    @torch.no_grad()
    def decode(
        self, ids: torch.Tensor, cache: KVCache | None = None, update_cache: bool = False
    ) -> torch.Tensor:
        """Token ids (B, T, h, w) -> video (B, T, H, W, C) in [0, 1]. With a decoder cache
        (`self.decoder.new_cache(window)`), ids hold only the frames after those cached."""
        q = self.quantizer.lookup(ids.flatten(2))  # (B, T, N, code_dim)
        return self._decode_vectors(q, cache, update_cache)
