import pytest
import torch
import torch.nn.functional as F

from opengenie.nn import STTransformer
from opengenie.nn.st_transformer import _math_attention, rotary_table


def _model(**kw):
    torch.manual_seed(0)
    return STTransformer(dim=32, depth=2, heads=4, ffn=64, **kw).eval()


def test_shape_is_preserved():
    x = torch.randn(2, 5, 7, 32)
    assert _model()(x).shape == (2, 5, 7, 32)


def test_causal_in_time():
    model = _model()
    x = torch.randn(2, 6, 9, 32)
    y = x.clone()
    y[:, 3:] = torch.randn_like(y[:, 3:])  # change frames 3..5
    out_x, out_y = model(x), model(y)
    assert torch.allclose(out_x[:, :3], out_y[:, :3], atol=1e-6)
    assert not torch.allclose(out_x[:, 3:], out_y[:, 3:], atol=1e-3)


def test_spatial_attention_never_mixes_frames():
    block = _model().blocks[0]
    x = torch.randn(1, 4, 9, 32)
    y = x.clone()
    y[:, 2] += torch.randn_like(y[:, 2])
    b, t, n, d = x.shape
    sx = block.spatial(block.norm_s(x).reshape(b * t, n, d)).view(b, t, n, d)
    sy = block.spatial(block.norm_s(y).reshape(b * t, n, d)).view(b, t, n, d)
    changed = (sx - sy).abs().amax(dim=(0, 2, 3))  # per frame
    assert changed[2] > 1e-3
    assert torch.all(changed[[0, 1, 3]] == 0)


def test_temporal_attention_never_mixes_positions():
    block = _model().blocks[0]
    x = torch.randn(1, 4, 9, 32)
    y = x.clone()
    y[:, :, 5] += torch.randn_like(y[:, :, 5])  # change one spatial position in every frame
    b, t, n, d = x.shape
    pos = torch.arange(t)

    def temporal(z):
        seq = block.norm_t(z).transpose(1, 2).reshape(b * n, t, d)
        rope = rotary_table(pos, block.temporal.head_dim, seq.dtype)
        q, k, v = block.temporal.project(seq, rope)
        return block.temporal.attend(q, k, v, causal=True).view(b, n, t, d)

    changed = (temporal(x) - temporal(y)).abs().amax(dim=(0, 2, 3))  # per position
    assert changed[5] > 1e-3
    assert torch.all(changed[torch.arange(n) != 5] == 0)


def test_qk_norm_option_changes_the_model():
    with_norm = _model(qk_norm=True)
    without = _model(qk_norm=False)
    assert any("q_norm" in n for n, _ in with_norm.named_parameters())
    assert not any("q_norm" in n for n, _ in without.named_parameters())


def test_cache_matches_full_recompute_within_window():
    model = _model()
    x = torch.randn(2, 6, 9, 32)
    full = model(x)
    cache = model.new_cache(window=16)
    steps = [model(x[:, t : t + 1], cache, update_cache=True) for t in range(6)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_cache_slides_past_the_window_like_relative_attention():
    model = _model()
    x = torch.randn(1, 10, 4, 32)
    cache = model.new_cache(window=4)
    outs = [model(x[:, t : t + 1], cache, update_cache=True) for t in range(10)]
    assert cache.length == 3  # window minus the next frame
    assert cache.next_pos == 10
    # The first frame equals a fresh run; past the window the output is finite and differs
    # from a fresh run on the frame alone (the window still carries context).
    assert torch.allclose(outs[0], model(x[:, :1]), atol=1e-5)
    assert torch.isfinite(outs[-1]).all()
    assert not torch.allclose(outs[-1], model(x[:, 9:10]), atol=1e-3)


@pytest.mark.parametrize("lq, lk", [(6, 6), (2, 6), (1, 6)])
def test_math_attention_matches_sdpa(lq, lk):
    # The bf16 CPU path must compute the same attention as the fused kernel (checked in fp32).
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, lq, 8), torch.randn(3, 2, lk, 8), torch.randn(3, 2, lk, 8)
    mask = torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(_math_attention(q, k, v, mask), expected, atol=1e-5)
    free = F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(_math_attention(q, k, v, None), free, atol=1e-5)


def test_bf16_causal_attention_stays_causal():
    torch.manual_seed(0)
    model = STTransformer(dim=16, depth=2, heads=2, ffn=32, qk_norm=False).to(torch.bfloat16)
    x = torch.randn(1, 5, 4, 16, dtype=torch.bfloat16)
    changed = x.clone()
    changed[:, 3:] += 1.0
    out, out_changed = model(x), model(changed)
    assert torch.equal(out[:, :3], out_changed[:, :3])  # the past never sees the future
    assert not torch.equal(out[:, 3:], out_changed[:, 3:])


def test_temporal_window_hides_frames_further_back():
    # One block with window 3: frame t sees frames t-2..t only, so changing frame 0 changes
    # frames 0..2 and leaves 3.. alone. (With more blocks the reach grows by window-1 each.)
    torch.manual_seed(0)
    model = STTransformer(dim=32, depth=1, heads=4, ffn=64, window=3).eval()
    x = torch.randn(2, 7, 5, 32)
    y = x.clone()
    y[:, 0] = torch.randn_like(y[:, 0])
    out_x, out_y = model(x), model(y)
    assert not torch.allclose(out_x[:, 2], out_y[:, 2], atol=1e-3)
    assert torch.allclose(out_x[:, 3:], out_y[:, 3:], atol=1e-6)
    # Within the window it is the plain causal model (same weights).
    torch.manual_seed(0)
    plain = STTransformer(dim=32, depth=1, heads=4, ffn=64).eval()
    assert torch.allclose(plain(x[:, :3]), out_x[:, :3], atol=1e-6)
    assert not torch.allclose(plain(x)[:, 3:], out_x[:, 3:], atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_temporal_window_cache_matches_full_recompute(dtype):
    model = _model(window=3).to(dtype)
    x = torch.randn(2, 8, 5, 32, dtype=dtype)
    full = model(x)
    cache = model.new_cache(window=16)
    assert cache.window == 3  # never keeps more than the model can see
    steps = [model(x[:, t : t + 1], cache, update_cache=True) for t in range(8)]
    atol = 1e-5 if dtype == torch.float32 else 5e-2
    assert torch.allclose(torch.cat(steps, dim=1).float(), full.float(), atol=atol)


def test_commit_stores_what_a_full_pass_stores():
    """commit() skips the last block's attention and FFN, yet leaves the cache exactly as a
    full pass with update_cache does, so later frames see the same keys and values."""
    model = _model()
    x = torch.randn(2, 5, 9, 32)
    full, fast = model.new_cache(window=4), model.new_cache(window=4)
    for t in range(5):
        model(x[:, t : t + 1], full, update_cache=True)
        assert model.commit(x[:, t : t + 1], fast) is None
    assert fast.next_pos == full.next_pos == 5
    for a, b in zip(full.keys + full.values, fast.keys + fast.values, strict=True):
        assert torch.equal(a, b)
