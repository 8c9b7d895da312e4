"""How far the scene scrolled between two frames: the camera's (dx, dy) in pixels.

In side-scrollers such as CoinRun the camera follows the player, so holding → moves the scene's
content to the left. ``estimate_scroll`` finds the whole-pixel shift that best aligns two frames
(smallest mean absolute difference over their overlap), then refines it to sub-pixel precision
with a parabola through the cost at the neighbouring shifts.

Sign convention: dx > 0 when the camera moved right (content moved left, as when running →),
dy > 0 when the camera moved up (content moved down, as when jumping ↑).
"""

from __future__ import annotations

import numpy as np

# px searched: at 64x64, 16 frames of running scroll about 15 px, a jump's apex about 35 px.
MAX_DX, MAX_DY = 24, 40
MIN_OVERLAP = 0.3  # shifts that leave under 30% of the frame side overlapping are not tried


def _costs(a: np.ndarray, b: np.ndarray, rx: int, ry: int) -> np.ndarray:
    """Mean |a - b| over the overlap for every camera shift: a, b (N, H, W) float ->
    costs (N, 2*ry + 1, 2*rx + 1), indexed [dy_img + ry, dx + rx]."""
    n, h, w = a.shape
    costs = np.full((n, 2 * ry + 1, 2 * rx + 1), np.inf)
    for sy in range(-ry, ry + 1):
        for sx in range(-rx, rx + 1):
            # Camera moved by (sx, sy_img): b[y, x] shows what a showed at [y + sy, x + sx].
            y0, y1 = max(0, -sy), min(h, h - sy)
            x0, x1 = max(0, -sx), min(w, w - sx)
            if y1 - y0 < MIN_OVERLAP * h or x1 - x0 < MIN_OVERLAP * w:
                continue
            diff = b[:, y0:y1, x0:x1] - a[:, y0 + sy : y1 + sy, x0 + sx : x1 + sx]
            costs[:, sy + ry, sx + rx] = np.abs(diff).mean(axis=(1, 2))
    return costs


def _parabola(left: np.ndarray, mid: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Offset in (-0.5, 0.5) of the minimum of the parabola through three costs."""
    curvature = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = 0.5 * (left - right) / curvature
    ok = np.isfinite(offset) & (curvature > 0)
    return np.where(ok, np.clip(offset, -0.5, 0.5), 0.0)


def estimate_scroll(
    start: np.ndarray, later: np.ndarray, max_dx: int = MAX_DX, max_dy: int = MAX_DY
) -> tuple[np.ndarray, np.ndarray]:
    """Camera scroll from ``start`` to ``later``: uint8 or float frames (..., H, W, C) of the
    same shape -> (dx, dy), float arrays of the leading shape, in pixels (module docstring)."""
    a = np.asarray(start, dtype=np.float32)
    b = np.asarray(later, dtype=np.float32)
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(f"expected two alike frame arrays (..., H, W, C): {a.shape}, {b.shape}")
    lead = a.shape[:-3]
    # Channels averaged: the shift is in the layout, and it is 3x cheaper to search.
    a = a.reshape(-1, *a.shape[-3:]).mean(axis=-1)  # (N, H, W)
    b = b.reshape(-1, *b.shape[-3:]).mean(axis=-1)
    rx, ry = max_dx, max_dy
    costs = _costs(a, b, rx, ry)  # (N, 2ry+1, 2rx+1)
    flat = costs.reshape(len(a), -1).argmin(axis=1)
    iy, ix = np.unravel_index(flat, costs.shape[1:])
    rows = np.arange(len(a))

    def neighbour(dy: int, dx: int) -> np.ndarray:
        y = np.clip(iy + dy, 0, 2 * ry)
        x = np.clip(ix + dx, 0, 2 * rx)
        c = costs[rows, y, x]
        inside = (iy + dy >= 0) & (iy + dy <= 2 * ry) & (ix + dx >= 0) & (ix + dx <= 2 * rx)
        return np.where(inside & np.isfinite(c), c, np.inf)

    mid = costs[rows, iy, ix]
    fx = _parabola(neighbour(0, -1), mid, neighbour(0, 1))
    fy = _parabola(neighbour(-1, 0), mid, neighbour(1, 0))
    dx = ix - rx + fx
    dy_img = iy - ry + fy  # image rows grow downwards: the camera moving up is a negative shift
    return dx.reshape(lead) + 0.0, (0.0 - dy_img).reshape(lead)
