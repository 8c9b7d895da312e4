"""The latent action model: discovers a tiny set of actions from video alone (paper §2.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from opengenie.config import GenieConfig
from opengenie.nn import STTransformer, build_quantizer
from opengenie.nn.patches import patchify, unpatchify


class LatentActionModel(nn.Module):
    """VQ-VAE over pixels whose bottleneck is one action per transition.

    Encoder: sees x_1..x_{t+1} (causal), one learned action-query token per frame; its output
    at frame t+1 is the continuous action a_t. Quantised to |A| codes. Decoder: sees x_1..x_t
    with a_1..a_t added to the patches of the frame they follow, predicts x_{t+1} in pixels.
    Only |A| codes pass the bottleneck, so the action has to say what changed, not the frame.

    Options (``LAMConfig``): ``decoder_context="latest"`` decodes each transition from x_t alone
    (no history to extrapolate motion from); ``objective="difference"`` predicts x_{t+1} - x_t
    with each transition's loss divided by its own mean squared change. With labels
    (``label_fraction``), an inverse-dynamics head on the encoder's action learns the movement;
    ``label_codes`` also makes a labelled transition's action code m of its movement m.
    """

    DIFF_FLOOR = 1e-3  # mean squared change below which a transition counts as "still"
    LABEL_CLASSES = 6  # CoinRun's movements (data.coinrun.COINRUN_GROUP_NAMES)
    CODE_TEMPERATURE = 0.1  # cosine similarities / 0.1 as logits over the codes (label_codes)

    def __init__(self, config: GenieConfig) -> None:
        super().__init__()
        cfg = config.lam
        self.patch, self.grid = cfg.patch, config.image_size // cfg.patch
        tokens, pixels = self.grid**2, cfg.patch**2 * config.channels
        code_dim = cfg.quantizer.code_dim
        self.enc_in = nn.Linear(pixels, cfg.dim)
        self.action_query = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.enc_pos = nn.Parameter(torch.randn(tokens + 1, cfg.dim) * 0.02)  # query + patches
        self.encoder = STTransformer(cfg.dim, cfg.enc_depth, cfg.heads, cfg.ffn, cfg.qk_norm)
        self.enc_out = nn.Linear(cfg.dim, code_dim)
        self.quantizer = build_quantizer(cfg.quantizer, code_dim)
        self.dec_in = nn.Linear(pixels, cfg.dim)
        self.dec_action = nn.Linear(code_dim, cfg.dim)
        self.dec_pos = nn.Parameter(torch.randn(tokens, cfg.dim) * 0.02)
        self.decoder = STTransformer(cfg.dim, cfg.dec_depth, cfg.heads, cfg.ffn, cfg.qk_norm)
        self.dec_out = nn.Linear(cfg.dim, pixels)
        self.latest_only = cfg.decoder_context == "latest"
        self.difference = cfg.objective == "difference"
        self.label_weight = cfg.label_weight
        # With labels: an inverse-dynamics head on the encoder's action, so that the encoder
        # learns to see the movement; the codes then cluster by it (a cross-entropy on the
        # codebook itself collapsed: every action to one code).
        self.label_codes = cfg.label_codes
        head = cfg.label_fraction > 0 and not cfg.label_codes
        self.label_head = nn.Linear(code_dim, self.LABEL_CLASSES) if head else None
        if self.label_codes:  # a code that names a movement must never be re-initialised
            self.quantizer.dead_code_steps = 0

    @property
    def num_actions(self) -> int:
        return self.quantizer.num_codes

    def _continuous_actions(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) -> continuous actions (B, T-1, code_dim)."""
        patches = self.enc_in(patchify(video, self.patch))  # (B, T, N, D)
        b, t, _, d = patches.shape
        query = self.action_query.expand(b, t, 1, d)
        x = torch.cat((query, patches), dim=2) + self.enc_pos  # (B, T, N+1, D)
        return self.enc_out(self.encoder(x)[:, 1:, 0])  # frame t+1's query holds a_t

    def forward(self, video: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """Predict frames 2..T from frames 1..T-1 and the quantised actions between them.

        ``labels`` (B, T-1), -1 where unknown: the movement of each labelled transition
        (``lam.label_fraction``), a cross-entropy of the label head on the encoder's action."""
        z = self._continuous_actions(video)  # (B, T-1, A)
        q, ids, q_loss, stats = self.quantizer(z)
        if self.label_codes and labels is not None:
            q, ids, q_loss = self._impose_label_codes(z, q, ids, q_loss, labels)
        context, target = video[:, :-1], video[:, 1:]
        x = self.dec_in(patchify(context, self.patch)) + self.dec_pos  # (B, T-1, N, D)
        x = x + self.dec_action(q)[:, :, None]  # each action added to the frame it follows
        b, t = x.shape[:2]
        if self.latest_only:  # every transition on its own: (B*(T-1), 1, N, D)
            x = self.decoder(x.reshape(b * t, 1, *x.shape[2:])).reshape(x.shape)
        else:
            x = self.decoder(x)
        out = unpatchify(self.dec_out(x).float(), self.patch, self.grid, self.grid)
        pred, loss = self._prediction(out, context, target)
        label_loss = self._label_loss(z, labels)
        return {
            "loss": loss + q_loss + self.label_weight * label_loss,
            "mse": F.mse_loss(pred, target),
            "label_loss": label_loss,
            "pred": pred,
            "ids": ids,
            "actions": q,
            **stats,
        }

    def _prediction(self, out: torch.Tensor, context: torch.Tensor, target: torch.Tensor):
        """Decoder output -> (predicted frames, loss) under ``lam.objective``; (B, T-1, H, W, C)."""
        if not self.difference:
            pred = torch.sigmoid(out)
            return pred, F.mse_loss(pred, target)
        change = target - context  # in [-1, 1]
        pred_change = torch.tanh(out)
        scale = change.pow(2).mean(dim=(2, 3, 4)).clamp(min=self.DIFF_FLOOR)  # (B, T-1)
        err = (pred_change - change).pow(2).mean(dim=(2, 3, 4))
        return (context + pred_change).clamp(0, 1), (err / scale).mean()

    def _impose_label_codes(self, z, q, ids, q_loss, labels):
        """Labelled transitions take code m of their movement m; the VQ loss pulls the encoder
        to the code each transition takes (the label's, else the nearest). z (B, T-1, A)."""
        known = labels >= 0  # (B, T-1)
        if not bool(known.any()):
            return q, ids, q_loss
        forced = self.quantizer.lookup(labels.clamp(min=0))  # (B, T-1, A), grads to the codebook
        q = torch.where(known[..., None], forced, q)
        taken = torch.where(known[..., None], forced, self.quantizer.lookup(ids))  # (B, T-1, A)
        zn = F.normalize(z.float(), dim=-1)
        beta = self.quantizer.beta
        loss = F.mse_loss(taken, zn.detach()) + beta * F.mse_loss(zn, taken.detach())
        return q, torch.where(known, labels, ids), loss

    def _label_loss(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        labelled = self.label_head is not None or self.label_codes
        known = labels >= 0 if labels is not None and labelled else None
        if known is None or not bool(known.any()):
            return z.new_zeros(()).float()
        if self.label_codes:  # inference takes the most similar code: train that choice
            zn = F.normalize(z[known].float(), dim=-1)  # (K, A)
            logits = zn @ self.quantizer.codebook().t() / self.CODE_TEMPERATURE  # (K, codes)
        else:
            logits = self.label_head(z[known]).float()  # (K, 6)
        return F.cross_entropy(logits, labels[known])

    @torch.no_grad()
    def infer(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) float in [0, 1] -> action ids (B, T-1), 0-based."""
        training = self.training
        self.eval()
        _, ids, _, _ = self.quantizer(self._continuous_actions(video))
        self.train(training)
        return ids

    def action_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Action ids (...) -> the code vectors the dynamics model is conditioned on (..., A)."""
        return self.quantizer.lookup(ids)
