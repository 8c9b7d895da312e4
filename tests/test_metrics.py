"""Frame and action metrics on inputs whose answers are known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from opengenie.eval.metrics import (
    best_mapping_accuracy,
    bootstrap_ci,
    key_assignment,
    nmi,
    psnr,
    ssim,
)


def _images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0.2, 0.8] (room for noise without clipping). (..., H, W, C)"""
    g = torch.Generator().manual_seed(seed)
    *lead, h, w, c = shape
    low = torch.rand(*lead, c, h // 8, w // 8, generator=g)
    up = torch.nn.functional.interpolate(low.reshape(-1, c, h // 8, w // 8), size=(h, w))
    return (0.2 + 0.6 * up).reshape(*lead, c, h, w).movedim(-3, -1)


# ---- PSNR ----


def test_psnr_of_known_error_matches_formula() -> None:
    a = _images((2, 3, 32, 32, 3))  # (B, T, H, W, C)
    g = torch.Generator().manual_seed(1)
    sign = torch.randint(0, 2, a.shape, generator=g).float() * 2 - 1
    for sigma in (0.01, 0.05, 0.1):
        # |error| = sigma everywhere: MSE is exactly sigma^2, PSNR exactly -20 log10(sigma).
        out = psnr(a, a + sigma * sign)
        assert out.shape == (2, 3)
        torch.testing.assert_close(
            out, torch.full((2, 3), -20 * math.log10(sigma)), atol=1e-3, rtol=0
        )


def test_psnr_of_gaussian_noise_and_max_val() -> None:
    a = _images((4, 64, 64, 3))
    g = torch.Generator().manual_seed(2)
    noisy = a + 0.1 * torch.randn(a.shape, generator=g)
    out = psnr(a, noisy)
    assert out.shape == (4,)
    assert torch.allclose(out, torch.full((4,), 20.0), atol=0.1)  # 10 log10(1 / 0.01)
    # Same images on a 0..255 scale with max_val 255: the same dB.
    torch.testing.assert_close(psnr(a * 255, noisy * 255, max_val=255.0), out, rtol=1e-4, atol=1e-3)
    assert torch.isinf(psnr(a, a)).all()


def test_psnr_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        psnr(torch.zeros(2, 8, 8, 3), torch.zeros(2, 8, 8, 1))


# ---- SSIM ----


def _naive_ssim(x: np.ndarray, y: np.ndarray, win: int = 11, sigma: float = 1.5) -> float:
    """Window-by-window SSIM of one (H, W, C) image in float64: an independent reference."""
    coords = np.arange(win) - (win - 1) / 2
    g1 = np.exp(-(coords**2) / (2 * sigma**2))
    w2 = np.outer(g1, g1) / np.outer(g1, g1).sum()
    c1, c2 = 0.01**2, 0.03**2
    h, w, c = x.shape
    per_channel = []
    for ch in range(c):
        vals = []
        for i in range(h - win + 1):
            for j in range(w - win + 1):
                px, py = x[i : i + win, j : j + win, ch], y[i : i + win, j : j + win, ch]
                mx, my = (w2 * px).sum(), (w2 * py).sum()
                vx = (w2 * (px - mx) ** 2).sum()
                vy = (w2 * (py - my) ** 2).sum()
                cxy = (w2 * (px - mx) * (py - my)).sum()
                vals.append(
                    ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
        per_channel.append(np.mean(vals))
    return float(np.mean(per_channel))


def test_ssim_matches_naive_reference() -> None:
    a = _images((2, 24, 24, 3), seed=3)
    g = torch.Generator().manual_seed(4)
    b = (a + 0.08 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    out = ssim(a, b)
    assert out.shape == (2,)
    for k in range(2):
        ref = _naive_ssim(a[k].double().numpy(), b[k].double().numpy())
        assert abs(out[k].item() - ref) < 1e-4, (out[k].item(), ref)


def test_ssim_identical_is_one_and_drops_with_noise() -> None:
    a = _images((3, 2, 64, 64, 3), seed=5)  # (B, T, H, W, C)
    torch.testing.assert_close(ssim(a, a), torch.ones(3, 2), atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(6)
    noise = torch.randn(a.shape, generator=g)
    scores = [ssim(a, (a + s * noise).clamp(0, 1)).mean().item() for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(x > y for x, y in itertools.pairwise([1.0, *scores])), scores
    assert scores[-1] < 0.5
    torch.testing.assert_close(ssim(a, a + 0.05 * noise), ssim(a + 0.05 * noise, a))  # symmetric


def test_ssim_rejects_small_images() -> None:
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 8, 8, 3), torch.zeros(1, 8, 8, 3))


# ---- NMI and mapping ----


def test_nmi_perfect_permuted_mapping_is_one() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=5000)
    perm = np.array([3, 7, 1, 0, 5, 2])  # code = perm[label]: a renaming, nothing lost
    assert nmi(perm[labels], labels) == pytest.approx(1.0, abs=1e-12)
    assert nmi(torch.from_numpy(perm[labels]), torch.from_numpy(labels)) == pytest.approx(1.0)


def test_nmi_independent_codes_is_near_zero() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, size=20000)
    codes = rng.integers(0, 8, size=20000)
    assert 0.0 <= nmi(codes, labels) < 0.005


def test_nmi_small_case_by_hand() -> None:
    # p(c, l): (0,0) 1/2, (1,0) 1/4, (1,1) 1/4; marginals c (1/2, 1/2), l (3/4, 1/4).
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    h_c = math.log(2)
    h_l = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert nmi([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(mi / ((h_c + h_l) / 2), rel=1e-12)
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)


def test_nmi_partial_information_is_between() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 6, size=5000)
    noisy = np.where(rng.random(5000) < 0.3, rng.integers(0, 6, size=5000), labels)
    assert 0.2 < nmi(noisy, labels) < 0.9


def test_best_mapping_recovers_permutation() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, size=3000)
    perm = np.array([4, 0, 5, 1, 3, 2])
    codes = perm[labels].copy()
    flip = rng.random(3000) < 0.1
    codes[flip] = rng.integers(0, 6, size=flip.sum())
    acc, mapping = best_mapping_accuracy(codes, labels)
    assert mapping == {int(perm[lab]): lab for lab in range(6)}
    assert acc == pytest.approx(np.mean(codes == perm[labels]))  # right exactly where unflipped
    acc11, mapping11 = best_mapping_accuracy(codes, labels, one_to_one=True)
    assert (acc11, mapping11) == (acc, mapping)


def test_best_mapping_many_codes_per_label() -> None:
    # 8 codes for 6 labels: labels 0 and 1 are each split across two codes.
    labels = np.repeat(np.arange(6), 100)
    codes = labels.copy()
    codes[:50], codes[100:150] = 6, 7
    acc, mapping = best_mapping_accuracy(codes, labels)
    assert acc == 1.0
    assert mapping == {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 0, 7: 1}
    acc11, mapping11 = best_mapping_accuracy(codes, labels, one_to_one=True)
    assert acc11 == pytest.approx(500 / 600)  # two half-labels cannot be matched
    assert len(mapping11) == 6 and len(set(mapping11.values())) == 6


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (6, 3), (1, 4)])
def test_one_to_one_matches_brute_force(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        table = rng.integers(0, 20, size=shape)
        codes = np.repeat(np.repeat(np.arange(shape[0]), shape[1]), table.reshape(-1))
        labels = np.repeat(np.tile(np.arange(shape[1]), shape[0]), table.reshape(-1))
        n, m = shape
        best = 0
        for perm in itertools.permutations(range(max(n, m)), min(n, m)):
            pairs = (
                zip(range(n), perm, strict=False) if n <= m else zip(perm, range(m), strict=False)
            )
            best = max(best, sum(table[i, j] for i, j in pairs))
        acc, _ = best_mapping_accuracy(codes, labels, one_to_one=True)
        assert acc == pytest.approx(best / table.sum())


# ---- bootstrap ----


def test_bootstrap_ci_covers_mean_and_has_normal_width() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(1.0, 2.0, size=400)
    low, high = bootstrap_ci(values, n=4000, seed=0)
    assert low < values.mean() < high
    expected = 2 * 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert (high - low) == pytest.approx(expected, rel=0.1)
    assert bootstrap_ci(values, n=4000, seed=0) == (low, high)  # seeded: reproducible
    low_big, high_big = bootstrap_ci(rng.normal(1.0, 2.0, size=1600), n=4000, seed=0)
    assert (high_big - low_big) == pytest.approx((high - low) / 2, rel=0.15)  # 1/sqrt(n)


def test_bootstrap_ci_rejects_nan() -> None:
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, float("nan")])


def test_key_assignment_gives_each_movement_its_most_specific_code() -> None:
    # A random policy's data: "none" dominates every code, so a majority mapping would name
    # every code "none". Lift still finds code 2 for left and code 0 for right.
    names = ["none", "left", "right"]
    table = np.array(
        [
            [50, 5, 30],  # code 0: right-ish
            [60, 10, 10],  # code 1: plain
            [50, 30, 5],  # code 2: left-ish
            [0, 0, 0],  # code 3: never used
        ]
    )
    keys = key_assignment(table, [0, 1, 2], names)
    assert keys == {"right": 0, "left": 2, "none": 1}
    assert len(set(keys.values())) == len(keys)  # one code per key
    assert key_assignment(table, [0], names) == {"right": 0}  # only codes in use
    assert key_assignment(np.ones((3, 3)), [0, 1, 2], names) == {}  # nothing enriched
