"""Pass A of the protocol: the tokenizer's reconstruction of every frame, and the LAM's actions.

Both read the same real clips, so one pass gives the tokenizer's PSNR/SSIM, the tokens that
prompt every rollout, and the latent actions the rollouts replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from opengenie.eval.clips import batches, to_float
from opengenie.eval.metrics import bootstrap_ci, capped_psnr, ssim
from opengenie.eval.rollout import to_uint8


@dataclass
class Reconstruction:
    psnr: np.ndarray  # (N, T) per frame
    ssim: np.ndarray  # (N, T)
    tokens: torch.Tensor  # (N, T, N_tok) on the CPU
    codes: np.ndarray  # (N, T-1) the LAM's latent action per transition
    pictures: np.ndarray | None  # uint8 (4, T, H, W, 3): the first clips' reconstructions


@torch.no_grad()
def reconstruct(
    world: Any, real: np.ndarray, batch_size: int, device: torch.device, progress: bool
) -> Reconstruction:
    """Encode, decode and label uint8 clips ``real`` (N, T, H, W, 3)."""
    n, t_len = real.shape[:2]
    rec_psnr = np.zeros((n, t_len))
    rec_ssim = np.zeros((n, t_len))
    codes = np.zeros((n, t_len - 1), dtype=np.int64)
    pictures = None
    token_parts = []
    for _, sl in tqdm(
        list(batches(n, batch_size)), desc="tokenizer + LAM", unit="batch", disable=not progress
    ):
        video = to_float(real[sl], device)  # (B, T, H, W, 3)
        ids = world.tokenizer.encode(video)  # (B, T, h, w)
        recon = world.tokenizer.decode(ids).float().clamp(0, 1)  # (B, T, H, W, 3)
        rec_psnr[sl] = capped_psnr(recon, video).cpu().numpy()
        rec_ssim[sl] = ssim(recon, video).cpu().numpy()
        token_parts.append(ids.flatten(2).cpu())  # (B, T, N_tok)
        codes[sl] = world.lam.infer(video).cpu().numpy()  # (B, T-1)
        if pictures is None:
            pictures = to_uint8(recon[:4])
    return Reconstruction(rec_psnr, rec_ssim, torch.cat(token_parts), codes, pictures)


def tokenizer_section(rec: Reconstruction, resamples: int, seed: int) -> dict[str, Any]:
    """metrics.json's ``tokenizer``: mean PSNR/SSIM and the PSNR's interval over clips."""
    low, high = bootstrap_ci(rec.psnr.mean(axis=1), n=resamples, seed=seed)
    return {
        "psnr": float(rec.psnr.mean()),
        "ssim": float(rec.ssim.mean()),
        "psnr_ci_low": low,
        "psnr_ci_high": high,
        "frames": int(rec.psnr.shape[1]),
    }
