"""Pass C of the protocol: teacher-forced next frame, one balanced position per clip.

Real frames 0..k-1 (their tokens and inferred actions) are the context and frame k is generated
and scored, at one position k per clip, with positions 1..T-1 balanced over the clips: an
unbiased estimate of the mean over positions at 1/(T-1) of the cost of scoring every one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from opengenie.eval.clips import to_float
from opengenie.eval.metrics import capped_psnr, ssim
from opengenie.eval.rollout import batch_generator, cached_rollout, decode_tokens
from opengenie.eval.settings import EvalSettings


@dataclass
class NextFrameScores:
    positions: np.ndarray  # (N,) the scored position of each clip, in 1..T-1
    psnr: np.ndarray  # (N,)
    ssim: np.ndarray  # (N,)

    def section(self, t_len: int) -> dict[str, Any]:
        """The next-frame entries of metrics.json's ``dynamics``."""
        by_position = [self.psnr[self.positions == k] for k in range(1, t_len)]
        return {
            "next_frame_psnr": float(self.psnr.mean()),
            "next_frame_ssim": float(self.ssim.mean()),
            "next_frame_psnr_by_position": [
                float(np.mean(p)) if p.size else float("nan") for p in by_position
            ],
        }


@torch.no_grad()
def score_next_frames(
    world: Any,
    real: np.ndarray,
    tokens: torch.Tensor,
    codes: np.ndarray,
    positions: np.ndarray,
    s: EvalSettings,
    window: int,
    precision: Any,
    progress: bool,
) -> NextFrameScores:
    """Score clip i of ``real`` (N, T, H, W, 3) at ``positions[i]``; ``tokens`` (N, T, N_tok)
    and ``codes`` (N, T-1) are the clips' tokens and inferred actions."""
    device = world.device if hasattr(world, "device") else torch.device("cpu")
    n, t_len = real.shape[:2]
    psnr = np.zeros(n)
    ssim_ = np.zeros(n)
    groups = [(k, np.flatnonzero(positions == k)) for k in range(1, t_len)]
    bs = s.batch_size
    jobs = [(k, rows[i : i + bs]) for k, rows in groups for i in range(0, rows.size, bs)]
    for j, (k, rows) in enumerate(
        tqdm(jobs, desc="teacher-forced next frame", unit="batch", disable=not progress)
    ):
        video = to_float(real[rows, k], device)  # (B, H, W, 3)
        context = tokens[rows, :k].to(device)  # (B, k, N_tok)
        actions = world.lam.action_vectors(torch.as_tensor(codes[rows, :k], device=device))
        with precision:
            out = cached_rollout(
                world.dynamics, context, actions, s.steps, s.temperature, s.mode,
                batch_generator(s.seed, j, 1, device), window, context_mask=s.context_mask,
                min_p=s.min_p,
            )  # fmt: skip
        dec = decode_tokens(world, out)[:, k]  # (B, H, W, 3)
        psnr[rows] = capped_psnr(dec, video).cpu().numpy()
        ssim_[rows] = ssim(dec, video).cpu().numpy()
    return NextFrameScores(positions, psnr, ssim_)
