"""Validation during training, on the held-out split: reconstruction PSNR, next-frame PSNR and
latent-action usage, plus image grids for TensorBoard."""

from __future__ import annotations

import numpy as np
import torch

from opengenie.models import VideoTokenizer, World

VAL_BATCHES = 4


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per clip PSNR (dB) of videos (B, T, H, W, C) in [0, 1]."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    return -10 * torch.log10(mse)


def grid_image(rows: list[torch.Tensor]) -> np.ndarray:
    """Rows of frames, each (T, H, W, C) float in [0, 1] -> one (rows*H, T*W, C) uint8 image."""
    lines = [torch.cat(list(r.clamp(0, 1)), dim=1) for r in rows]  # each (H, T*W, C)
    return (torch.cat(lines, dim=0) * 255).round().to(torch.uint8).cpu().numpy()


def _batches(loader, device: str):
    for _ in range(VAL_BATCHES):
        yield next(loader)["frames"].to(device).float().div(255)


@torch.no_grad()
def tokenizer_validation(model: VideoTokenizer, loader, device: str) -> dict:
    psnrs, codes = [], []
    for video in _batches(loader, device):
        ids = model.encode(video)
        psnrs.append(_psnr(model.decode(ids), video))
        codes.append(ids.flatten())
    used = torch.unique(torch.cat(codes)).numel()
    psnr = float(torch.cat(psnrs).mean())
    return {"score": psnr, "recon_psnr": psnr, "codes_used": used}


@torch.no_grad()
def tokenizer_images(model: VideoTokenizer, loader, device: str) -> dict:
    video = next(_batches(loader, device))[:2, :8]
    recon = model.decode(model.encode(video))
    rows = [x for pair in zip(video, recon, strict=True) for x in pair]
    return {"reconstructions": grid_image(rows)}


@torch.no_grad()
def dynamics_validation(world: World, loader, device: str) -> dict:
    """Next-frame PSNR: real frames 0..T-2 plus the LAM's inferred actions, the last frame's
    tokens all masked and predicted in one pass (argmax), decoded and compared with the real
    frame. Also the LAM's own next-frame PSNR and how many action codes it uses."""
    dyn_psnr, lam_psnr, actions = [], [], []
    for video in _batches(loader, device):
        dyn_psnr.append(_psnr(_predict_last(world, video), video[:, -1:]))
        lam_out = world.lam(video)
        lam_psnr.append(_psnr(lam_out["pred"], video[:, 1:]))
        actions.append(world.lam.infer(video).flatten())
    counts = torch.bincount(torch.cat(actions), minlength=world.num_actions).float()
    share = counts / counts.sum()
    next_psnr = float(torch.cat(dyn_psnr).mean())
    return {
        "score": next_psnr,
        "next_frame_psnr": next_psnr,
        "lam_next_frame_psnr": float(torch.cat(lam_psnr).mean()),
        "actions_used": int((share >= 0.01).sum()),
        "action_perplexity": float(torch.exp(-(share * share.clamp(min=1e-12).log()).sum())),
    }


def _predict_last(world: World, video: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, C) -> the predicted last frame (B, 1, H, W, C), teacher-forced."""
    tokens = world.tokenizer.encode(video).flatten(2)  # (B, T, N)
    vectors = world.lam.action_vectors(world.lam.infer(video))  # (B, T-1, A)
    masked = tokens.clone()
    masked[:, -1] = world.dynamics.mask_id
    guess = world.dynamics.logits(masked, vectors)[:, -1].argmax(-1)  # (B, N)
    grid = world.config.token_grid
    ids = torch.cat((tokens[:, :-1], guess[:, None]), dim=1).view(*tokens.shape[:2], grid, grid)
    return world.tokenizer.decode(ids)[:, -1:]


@torch.no_grad()
def dynamics_images(world: World, loader, device: str) -> dict:
    video = next(_batches(loader, device))[:2, :8]
    lam_pred = world.lam(video)["pred"]  # (B, 7, H, W, C)
    rows = []
    for real, pred in zip(video, lam_pred, strict=True):
        rows += [real[1:], pred]
    return {"lam_predictions": grid_image(rows)}
