"""Pass B of the protocol: rollouts with the inferred and with random actions, and ΔtPSNR.

From each clip's first real frame, x̂ replays the LAM's inferred actions and x̂′ actions drawn
uniformly from the codes in use, with identical sampling noise (one seeded generator per batch,
reset before each): ΔtPSNR = PSNR(x_t, x̂_t) − PSNR(x_t, x̂′_t) per clip (paper §3). The
headline setting rolls out the whole clip, whose frames also feed FVD and the rollout-PSNR plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from opengenie.eval.clips import batches, to_float
from opengenie.eval.metrics import bootstrap_ci, capped_psnr, ssim
from opengenie.eval.rollout import batch_generator, cached_rollout, decode_tokens, to_uint8
from opengenie.eval.settings import EvalSettings

Sampling = tuple[int, float]  # (MaskGIT steps, temperature)


@dataclass
class RolloutScores:
    delta: dict[Sampling, np.ndarray]  # (N,) ΔtPSNR per clip
    frame_t: dict[Sampling, np.ndarray]  # (N,) PSNR of x̂_t
    frame_t_random: dict[Sampling, np.ndarray]  # (N,) PSNR of x̂′_t
    psnr: np.ndarray  # (N, T) headline rollout against the clip, frame 0 = the prompt
    ssim: np.ndarray  # (N, T)
    generated: np.ndarray  # uint8 (N, T, H, W, 3) headline rollouts
    random_pictures: np.ndarray | None  # uint8 (4, 1+t, H, W, 3) x̂′ of the first clips


@torch.no_grad()
def score_rollouts(
    world: Any,
    real: np.ndarray,
    tokens: torch.Tensor,
    codes: np.ndarray,
    random_codes: np.ndarray,
    s: EvalSettings,
    window: int,
    precision: Any,
    progress: bool,
) -> RolloutScores:
    """Roll out every clip of ``real`` (N, T, H, W, 3) at each of ``s.samplings``.

    ``tokens`` (N, T, N_tok) give the prompts, ``codes`` / ``random_codes`` (N, T-1) the inferred
    and the random latent actions.
    """
    device = world.device if hasattr(world, "device") else torch.device("cpu")
    n, t_len = real.shape[:2]
    horizon = t_len - 1
    samplings = s.samplings
    delta = {k: np.zeros(n) for k in samplings}
    frame_t = {k: np.zeros(n) for k in samplings}
    frame_t_random = {k: np.zeros(n) for k in samplings}
    roll_psnr = np.zeros((n, t_len))
    roll_ssim = np.zeros((n, t_len))
    generated = np.zeros_like(real)
    random_pictures = None

    still = world.guidance_reference() if s.guidance else None  # (1, A)

    def vectors(c: np.ndarray) -> torch.Tensor:
        return world.lam.action_vectors(torch.as_tensor(c, device=device))  # (..., A)

    for b, sl in tqdm(
        list(batches(n, s.batch_size)),
        desc=f"rollouts ({horizon} frames, {s.steps} steps)",
        unit="batch",
        disable=not progress,
    ):
        video = to_float(real[sl], device)  # (B, T, H, W, 3)
        prompt = tokens[sl, :1].to(device)  # (B, 1, N_tok)
        inferred = vectors(codes[sl])  # (B, T-1, A)
        randoms = vectors(random_codes[sl])
        for k in samplings:
            steps, temperature = k
            main = k == samplings[0]
            length = horizon if main else s.t  # the headline setting also feeds FVD/plot
            with precision:
                gen = batch_generator(s.seed, b, 0, device)
                x_hat = cached_rollout(
                    world.dynamics, prompt, inferred[:, :length], steps, temperature,
                    s.mode, gen, window, s.guidance, still, s.context_mask, s.min_p,
                )  # fmt: skip
                gen = batch_generator(s.seed, b, 0, device)  # same noise for x̂′
                x_alt = cached_rollout(
                    world.dynamics, prompt, randoms[:, : s.t], steps, temperature,
                    s.mode, gen, window, s.guidance, still, s.context_mask, s.min_p,
                )  # fmt: skip
            dec = decode_tokens(world, x_hat)  # (B, 1+length, H, W, 3)
            dec_alt = decode_tokens(world, x_alt)  # (B, 1+t, H, W, 3)
            p_hat = capped_psnr(dec, video[:, : length + 1]).cpu().numpy()  # (B, 1+length)
            p_alt = capped_psnr(dec_alt[:, s.t], video[:, s.t]).cpu().numpy()  # (B,)
            frame_t[k][sl] = p_hat[:, s.t]
            frame_t_random[k][sl] = p_alt
            delta[k][sl] = p_hat[:, s.t] - p_alt
            if main:
                roll_psnr[sl] = p_hat
                roll_ssim[sl] = ssim(dec, video).cpu().numpy()
                generated[sl] = to_uint8(dec)
                if random_pictures is None:
                    random_pictures = to_uint8(dec_alt[:4])
    return RolloutScores(
        delta, frame_t, frame_t_random, roll_psnr, roll_ssim, generated, random_pictures
    )


def delta_entry(k: Sampling, scores: RolloutScores, s: EvalSettings) -> dict[str, Any]:
    """One sampling setting's ΔtPSNR: mean, bootstrap interval over clips, both frame PSNRs."""
    d = scores.delta[k]
    low, high = bootstrap_ci(d, n=s.bootstrap_resamples, seed=s.seed)
    return {
        "value": float(d.mean()),
        "ci_low": low,
        "ci_high": high,
        "frame_psnr": float(scores.frame_t[k].mean()),
        "frame_psnr_random": float(scores.frame_t_random[k].mean()),
        "std": float(d.std(ddof=1)) if d.size > 1 else 0.0,
        "t": s.t,
        "steps": k[0],
        "temperature": k[1],
        "mode": s.mode,
        "guidance": s.guidance,
        "context_mask": s.context_mask,
        "min_p": s.min_p,
        "clips": int(d.size),
        "label": f"steps={k[0]}, temperature={k[1]:g}"
        + (f", guidance={s.guidance:g}" if s.guidance else "")
        + (f", context_mask={s.context_mask:g}" if s.context_mask else "")
        + (f", min_p={s.min_p:g}" if s.min_p else ""),
    }
