"""Frame and action metrics: PSNR, SSIM, NMI, best code->label mapping, bootstrap intervals.

Images are float tensors in [0, 1], channel-last ``(..., H, W, C)``. PSNR and SSIM return one
value per image (shape ``(...)``, the leading dimensions); average them yourself, e.g. over
frames then clips. Values outside [0, 1] are not clamped here: clamp model outputs first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = np.ndarray | torch.Tensor | Sequence[int] | Sequence[float]


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim < 3:
        raise ValueError(f"expected images (..., H, W, C), got {tuple(a.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor, max_val: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: 10 log10(max_val^2 / MSE).

    The MSE is the mean over H, W and C of one image; identical images give +inf.
    a, b: (..., H, W, C) -> (...).
    """
    _check_pair(a, b)
    mse = (a.float() - b.float()).pow(2).mean(dim=(-3, -2, -1))  # (...)
    return 10.0 * torch.log10(max_val**2 / mse)


PSNR_CAP = 100.0  # dB; identical frames would give +inf (8-bit frames top out near 89 dB)


def capped_psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``psnr`` with identical images scored PSNR_CAP instead of +inf (averages stay finite)."""
    return psnr(a, b).clamp(max=PSNR_CAP)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()  # (size,)


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    max_val: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), written here (no extra package).

    The constants of ``tf.image.ssim`` (and of the TECO/FVD-era video papers): an 11x11
    Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, "valid" filtering (no padding), the
    SSIM map averaged over space, then over channels. a, b: (..., H, W, C) -> (...).
    """
    _check_pair(a, b)
    *lead, h, w, c = a.shape
    if h < window or w < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window}, got {h}x{w}")
    x = a.float().reshape(-1, h, w, c).permute(0, 3, 1, 2)  # (N, C, H, W)
    y = b.float().reshape(-1, h, w, c).permute(0, 3, 1, 2)
    g = _gaussian_window(window, sigma, x.device)
    # The 2D Gaussian is separable: filter rows then columns, one group per channel.
    kh = g.view(1, 1, window, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, window).repeat(c, 1, 1, 1)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, kh, groups=c), kw, groups=c)  # (N, C, H-10, W-10)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean(dim=(-2, -1)).mean(dim=-1).reshape(lead)  # (...)


def _contingency(codes: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    code_arr = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else codes
    label_arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels
    code_vals, ci = np.unique(np.asarray(code_arr).reshape(-1), return_inverse=True)
    label_vals, li = np.unique(np.asarray(label_arr).reshape(-1), return_inverse=True)
    if ci.size != li.size:
        raise ValueError(f"{ci.size} codes but {li.size} labels")
    if ci.size == 0:
        raise ValueError("no samples")
    table = np.zeros((code_vals.size, label_vals.size), dtype=np.int64)  # (codes, labels)
    np.add.at(table, (ci, li), 1)
    return table, code_vals, label_vals


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(codes: ArrayLike, labels: ArrayLike) -> float:
    """Normalized mutual information between two labelings, in [0, 1].

    Normalised by the arithmetic mean of the two entropies (scikit-learn's default):
    NMI = I(C; L) / ((H(C) + H(L)) / 2). Both constant gives 1; one constant, the other not,
    gives 0. Invariant to renaming codes or labels. Finite samples bias it slightly above 0
    for independent labelings (roughly (K-1)(L-1) / (2 N H) for K codes, L labels).
    """
    table, _, _ = _contingency(codes, labels)
    h_c, h_l = _entropy(table.sum(axis=1)), _entropy(table.sum(axis=0))
    if h_c == 0.0 and h_l == 0.0:
        return 1.0
    n = table.sum()
    joint = table / n  # (codes, labels)
    outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())
    return float(np.clip(mi / ((h_c + h_l) / 2), 0.0, 1.0))


def _max_assignment(score: np.ndarray) -> list[tuple[int, int]]:
    """Rows matched to distinct columns maximising the total score (Hungarian, O(n^3)).

    Works on rectangular matrices: min(rows, cols) pairs are returned.
    """
    transpose = score.shape[0] > score.shape[1]
    s = score.T if transpose else score  # (n, m) with n <= m
    n, m = s.shape
    cost = s.max() - s.astype(np.float64)
    # Potentials formulation (e-maxx); 1-based arrays, column 0 is the virtual start.
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    match = np.zeros(m + 1, dtype=np.int64)  # match[j] = row matched to column j
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        match[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = match[j0]
            delta, j1 = np.inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if match[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    pairs = [(int(match[j]) - 1, j - 1) for j in range(1, m + 1) if match[j] != 0]
    return [(c, r) for r, c in pairs] if transpose else pairs


def best_mapping_accuracy(
    codes: ArrayLike, labels: ArrayLike, one_to_one: bool = False
) -> tuple[float, dict[int, int]]:
    """Accuracy of the best code -> label mapping, and that mapping.

    Default (many-to-one): each code maps to its most frequent label (ties: the smallest
    label); this is the exact optimum when several codes may share a label, which is the case
    for a LAM with more codes than the game has distinct movements. ``one_to_one=True``: codes
    and labels are paired one-to-one (Hungarian algorithm, exact); unpaired codes count as
    wrong and are left out of the mapping. Keys and values are the original code and label
    values (ints).
    """
    table, code_vals, label_vals = _contingency(codes, labels)  # (codes, labels)
    if one_to_one:
        pairs = _max_assignment(table)
    else:
        pairs = [(i, int(np.argmax(table[i]))) for i in range(table.shape[0])]
    correct = sum(int(table[i, j]) for i, j in pairs)
    mapping = {int(code_vals[i]): int(label_vals[j]) for i, j in sorted(pairs)}
    return correct / int(table.sum()), mapping


def key_assignment(table: np.ndarray, codes: list[int], names: list[str]) -> dict[str, int]:
    """Which latent action each movement's key should send: movement name -> code.

    table: (codes, movements) counts of the LAM's codes against the true movements. Each code
    in `codes` (those in real use) is scored by its lift for a movement, P(movement | code) /
    P(movement), so that a movement the data is full of (a random policy's "none") cannot
    claim every code; codes and movements are then paired one-to-one to maximise the total
    lift (Hungarian), and a pair is kept only where the code is enriched (lift > 1).
    """
    table = np.asarray(table, dtype=np.float64)
    rows = [c for c in codes if table[c].sum() > 0]
    if not rows or table.sum() == 0:
        return {}
    prior = table.sum(0) / table.sum()  # (movements,)
    lift = (table[rows] / table[rows].sum(1, keepdims=True)) / np.maximum(prior, 1e-12)
    keys = {}
    for i, j in _max_assignment(lift):
        if lift[i, j] > 1.0:
            keys[names[j]] = int(rows[i])
    return keys


def bootstrap_ci(
    values: ArrayLike, n: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval (default 95%) of the mean of ``values``.

    ``n`` resamples of the same size, with replacement, from a seeded numpy generator, so the
    interval is reproducible. NaNs are not allowed (decide what they mean first).
    """
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    x = np.asarray(arr, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not np.isfinite(x).all():
        raise ValueError("bootstrap_ci got NaN or infinite values")
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    chunk = max(1, 4_000_000 // x.size)  # bound memory: chunk * size indices at a time
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def key_names(keys: dict[str, int]) -> dict[str, str]:
    """{movement: code} (eval's one-to-one key pairing) -> {"code": movement}, by code.

    These are the names play shows and the report labels actions with; not the many-to-one
    majority mapping, which on random-policy CoinRun names every code "none".
    """
    return {str(code): name for name, code in sorted(keys.items(), key=lambda kv: kv[1])}
