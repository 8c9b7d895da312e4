import numpy as np
import pytest
import torch

from opengenie.models import Dynamics, LatentActionModel, VideoTokenizer, World, maskgit_fill
from opengenie.models.maskgit import rollout

from .conftest import count_step_logits, synthetic_clip


def test_tokenizer_shapes_and_range(small_config):
    tok = VideoTokenizer(small_config).eval()
    video = torch.rand(2, 3, 32, 32, 3)
    ids = tok.encode(video)
    grid = small_config.token_grid
    assert ids.shape == (2, 3, grid, grid)
    out = tok.decode(ids)
    assert out.shape == video.shape
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_tokenizer_encoder_is_causal(small_config):
    tok = VideoTokenizer(small_config).eval()
    video = torch.rand(1, 5, 32, 32, 3)
    changed = video.clone()
    changed[:, 3:] = torch.rand_like(changed[:, 3:])
    a, b = tok._latents(video), tok._latents(changed)
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6)
    assert not torch.allclose(a[:, 3:], b[:, 3:], atol=1e-4)


def test_lam_infers_one_action_per_transition(small_config):
    lam = LatentActionModel(small_config).train()
    video = torch.rand(2, 4, 32, 32, 3)
    out = lam(video)
    assert out["pred"].shape == (2, 3, 32, 32, 3)
    assert out["ids"].shape == (2, 3)
    ids = lam.infer(video)
    assert ids.shape == (2, 3) and int(ids.max()) < small_config.num_actions
    out["loss"].backward()
    assert lam.enc_in.weight.grad.abs().sum() > 0  # the encoder learns through the bottleneck


def test_lam_action_t_sees_frames_up_to_t_plus_1(small_config):
    lam = LatentActionModel(small_config).eval()
    video = torch.rand(1, 5, 32, 32, 3)
    changed = video.clone()
    changed[:, 3:] = torch.rand_like(changed[:, 3:])  # frames 3, 4
    a, b = lam._continuous_actions(video), lam._continuous_actions(changed)
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-6)  # a_0, a_1 see frames <= 2
    assert not torch.allclose(a[:, 2], b[:, 2], atol=1e-4)  # a_2 sees frame 3


def _decoder_prediction(lam, video, actions):
    """The LAM decoder's prediction of frames 2..T given fixed quantised actions."""
    lam.quantizer.forward = lambda z: (actions, None, torch.zeros(()), {"codes_used": 1})
    return lam(video)["pred"]


def test_lam_latest_frame_decoder_sees_no_history(small_config):
    """decoder_context="latest": the prediction of x_{t+1} depends on x_t only (and a_t);
    the paper's decoder reads the whole history."""
    video = torch.rand(1, 5, 32, 32, 3)
    changed = video.clone()
    changed[:, 1] = torch.rand_like(changed[:, 1])  # an earlier frame only
    actions = torch.randn(1, 4, small_config.lam.quantizer.code_dim)
    for context, differs in (("latest", False), ("all", True)):
        small_config.lam.decoder_context = context
        torch.manual_seed(0)
        lam = LatentActionModel(small_config).eval()
        a, b = _decoder_prediction(lam, video, actions), _decoder_prediction(lam, changed, actions)
        assert torch.allclose(a[:, 0], b[:, 0], atol=1e-6)  # x_1 from x_0: before the change
        later = not torch.allclose(a[:, 2:], b[:, 2:], atol=1e-5)  # x_3, x_4 from x_2, x_3
        assert later == differs, context


def test_lam_difference_objective_weights_small_changes(small_config):
    """objective="difference": each transition's error is divided by its own change, so a
    1-pixel scroll counts as much as a large change; predictions stay frames in [0, 1]."""
    small_config.lam.objective = "difference"
    torch.manual_seed(0)
    lam = LatentActionModel(small_config).train()
    base = synthetic_clip(frames=3, size=32)
    out = lam(base)
    assert out["pred"].shape == (1, 2, 32, 32, 3)
    assert float(out["pred"].min()) >= 0 and float(out["pred"].max()) <= 1
    still = base[:, :1].repeat(1, 3, 1, 1, 1)
    lam.quantizer.forward = lambda z: (torch.zeros(1, 2, z.shape[-1]), None, torch.zeros(()), {})
    # A perfect "no change" prediction of a still clip costs nothing; of a moving one, about 1.
    lam.dec_out.weight.data.zero_()
    lam.dec_out.bias.data.zero_()  # tanh(0) = 0: predicts no change
    assert float(lam(still)["loss"]) == pytest.approx(0.0, abs=1e-6)
    assert float(lam(base)["loss"]) == pytest.approx(1.0, rel=1e-3)


def _tokens(config, b=2, t=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = config.token_grid**2
    return torch.randint(0, config.tokenizer.quantizer.codes, (b, t, n), generator=g)


def _actions(config, b=2, t=4):
    return torch.randn(b, t - 1, config.lam.quantizer.code_dim)


@pytest.mark.parametrize("mode", ["add", "token"])
def test_dynamics_logits_are_causal(small_config, mode):
    small_config.dynamics.action_mode = mode
    dyn = Dynamics(small_config).eval()
    tokens, actions = _tokens(small_config), _actions(small_config)
    changed = tokens.clone()
    changed[:, 2:] = _tokens(small_config, seed=1)[:, 2:]
    a, b = dyn.logits(tokens, actions), dyn.logits(changed, actions)
    assert a.shape == (*tokens.shape, small_config.tokenizer.quantizer.codes)
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-5)
    assert not torch.allclose(a[:, 2:], b[:, 2:], atol=1e-4)


def test_dynamics_actions_are_stop_gradient(small_config):
    dyn = Dynamics(small_config).train()
    actions = _actions(small_config).requires_grad_()
    dyn.masked_loss(_tokens(small_config), actions)["loss"].backward()
    assert actions.grad is None


def test_mask_rate_per_sample_first_frame_never_masked(small_config):
    dyn = Dynamics(small_config).train()
    tokens = _tokens(small_config, b=8, t=4)
    out = dyn.masked_loss(tokens, _actions(small_config, b=8), torch.Generator().manual_seed(0))
    mask, rate = out["mask"], out["mask_rate"]
    assert not mask[:, 0].any()
    assert len(set(rate.tolist())) == 8 and float(rate.min()) >= 0.5
    per_sample = mask[:, 1:].float().mean(dim=(1, 2))
    assert float(per_sample.max() - per_sample.min()) > 0.05  # rates really differ


def test_loss_counts_masked_tokens_only(small_config):
    dyn = Dynamics(small_config).train()
    tokens, actions = _tokens(small_config), _actions(small_config)
    g = torch.Generator().manual_seed(3)
    out = dyn.masked_loss(tokens, actions, g)
    mask = out["mask"]
    # Changing the targets of unmasked tokens (frame 0 and kept ones) leaves the loss alone
    # as long as the inputs stay the same: only masked positions are scored.
    logits = dyn.logits(tokens.masked_fill(mask, dyn.mask_id), actions)
    manual = torch.nn.functional.cross_entropy(logits[mask], tokens[mask])
    assert torch.allclose(out["loss"], manual, atol=1e-5)
    scored_all = torch.nn.functional.cross_entropy(logits.flatten(0, 2), tokens.flatten())
    assert not torch.allclose(out["loss"], scored_all, atol=1e-4)


class _CountingLogits:
    def __init__(self, vocab, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(n, vocab, generator=g) * 2
        self.calls = 0

    def __call__(self, tokens):
        self.calls += 1
        return self.table.expand(tokens.shape[0], -1, -1)


@pytest.mark.parametrize("steps", [1, 4, 25])
def test_sampler_runs_k_steps_and_fills_every_token(steps):
    fn = _CountingLogits(vocab=50, n=16)
    out = maskgit_fill(fn, 2, 16, mask_id=50, steps=steps, generator=torch.Generator())
    assert fn.calls == steps
    assert out.shape == (2, 16) and int(out.max()) < 50


def test_sampler_temperature_seed_and_mode_take_effect():
    fn = _CountingLogits(vocab=50, n=64)

    def sample(temperature, seed, mode="random"):
        g = torch.Generator().manual_seed(seed)
        return maskgit_fill(fn, 4, 64, 50, steps=8, temperature=temperature, mode=mode, generator=g)

    assert torch.equal(sample(1.0, 0), sample(1.0, 0))  # the seed reproduces
    assert not torch.equal(sample(1.0, 0), sample(1.0, 1))  # another seed differs
    assert not torch.equal(sample(1.0, 0), sample(3.0, 0))  # temperature changes the draw
    # Lower temperature concentrates on the argmax: agreement with greedy grows.
    greedy = sample(1.0, 0, "argmax")
    agree = [float((sample(t, 0) == greedy).float().mean()) for t in (3.0, 0.05)]
    assert agree[1] > agree[0]
    assert torch.equal(greedy, fn.table.argmax(-1).expand(4, -1))


def test_sampler_min_p_drops_the_unlikely_codes_and_only_those():
    """min_p: a code less likely than min_p times its token's likeliest is never drawn, every
    code above that share still is; 0 draws from the whole softmax, 1 is greedy."""
    vocab, n = 20, 256
    probs = torch.full((vocab,), 0.02)  # the tail: 0.02 / 0.3 < 0.1 of the likeliest
    probs[:3] = torch.tensor([0.3, 0.2, 0.16])  # 0.16 / 0.3 > 0.5: kept at min_p 0.5
    table = probs.log().expand(n, -1)  # (N, V): every token alike

    def sample(min_p: float) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        fn = lambda tokens: table.expand(tokens.shape[0], -1, -1)  # noqa: E731
        return maskgit_fill(fn, 4, n, vocab, steps=4, generator=g, min_p=min_p)

    assert set(sample(0.5).unique().tolist()) == {0, 1, 2}  # all three kept, the tail gone
    assert int(sample(0.0).max()) >= 3  # without min-p the tail is drawn (~34% of codes)
    assert set(sample(0.6).unique().tolist()) == {0, 1}  # 0.16 / 0.3 < 0.6
    assert torch.equal(sample(1.0), torch.zeros(4, n, dtype=torch.long))  # greedy
    with pytest.raises(ValueError, match="min_p"):
        sample(1.5)


def test_world_action_changes_output_and_seed_reproduces(small_config):
    torch.manual_seed(0)
    world = World(small_config)
    prompt = (synthetic_clip(1, 32)[0, 0].numpy() * 255).astype(np.uint8)

    def play(actions, seed):
        frames = [world.reset(prompt, seed=seed)]
        frames += [world.step(a) for a in actions]
        return np.stack(frames)

    a = play([0, 1, 2], seed=0)
    assert a.shape == (4, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, play([0, 1, 2], seed=0))
    assert not np.array_equal(a, play([0, 1, 2], seed=1))
    # Argmax sampling removes the seed's role, so only the action differs below.
    world.sampling.mode = "argmax"
    b, c = play([0, 0, 0], seed=0), play([3, 3, 3], seed=0)
    assert not np.array_equal(b[1:], c[1:])


def test_world_steps_setting_takes_effect(small_config):
    world = World(small_config)
    calls = count_step_logits(world)
    prompt = np.zeros((40, 50, 3), np.uint8)
    for steps in (3, 7):
        world.sampling.steps = steps
        world.reset(prompt, seed=0)
        calls["n"] = 0
        world.step(0)
        assert calls["n"] == steps + 1  # K MaskGIT steps plus one pass to commit the cache


def test_world_bad_action_is_a_user_error(small_config):
    from opengenie.errors import UserError

    world = World(small_config)
    world.reset(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(UserError, match="unknown action"):
        world.step(small_config.num_actions)


def test_cached_play_equals_recomputed_rollout(small_config):
    """Within the training window the KV cache gives exactly the frames recomputing gives."""
    torch.manual_seed(0)
    world = World(small_config)
    prompt = (synthetic_clip(1, 32)[0, 0].numpy() * 255).astype(np.uint8)
    actions = [1, 4, 0, 7, 2]  # frames = 6 = the window
    world.reset(prompt, seed=5)
    cached = [world.next_tokens(a) for a in actions]
    cached_tokens = torch.cat(cached, dim=1).flatten(2)  # (1, F, N)

    video = torch.from_numpy(prompt).float().div(255)[None, None]
    first = world.tokenizer.encode(video).flatten(2)
    vectors = world.lam.action_vectors(torch.tensor([actions]))
    s = world.sampling
    full = rollout(
        world.dynamics,
        first,
        vectors,
        s.steps,
        s.temperature,
        s.mode,
        torch.Generator().manual_seed(5),
        window=small_config.frames,
    )
    assert torch.equal(full[:, 1:], cached_tokens)


def test_world_save_load_round_trip(small_config, tmp_path):
    world = World(small_config)
    world.action_map = {"left": 1}
    world.save(tmp_path / "w")
    again = World.load(tmp_path / "w")
    assert again.action_map == {"left": 1}
    prompt = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    one = [world.reset(prompt, seed=3)] + [world.step(a) for a in (0, 2, 1)]
    two = [again.reset(prompt, seed=3)] + [again.step(a) for a in (0, 2, 1)]
    assert all(np.array_equal(x, y) for x, y in zip(one, two, strict=True))
    # Saving again over an existing world replaces it whole.
    world.save(tmp_path / "w")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_load_rejects_other_checkpoints(small_config, tmp_path):
    from opengenie.errors import UserError

    with pytest.raises(UserError, match="config.json"):
        World.load(tmp_path)
    with pytest.raises(UserError, match="not a directory"):
        World.load(tmp_path / "missing")


def test_sessions_are_independent(small_config):
    """Two players interleaved get exactly what each would get alone (separate caches/RNG)."""
    world = World(small_config)
    prompt = (synthetic_clip(1, 32)[0, 0].numpy() * 255).astype(np.uint8)
    alone = world.new_session()
    alone.reset(prompt, seed=1)
    expected = [alone.step(a) for a in (0, 1, 2)]
    a, b = world.new_session(), world.new_session()
    a.reset(prompt, seed=1)
    b.reset(np.zeros((32, 32, 3), np.uint8), seed=2)
    got = []
    for action in (0, 1, 2):
        got.append(a.step(action))
        b.step(3)
    assert all(np.array_equal(x, y) for x, y in zip(expected, got, strict=True))
    b.sampling.steps = 2  # per-session settings do not leak into the world's
    assert world.sampling.steps == small_config.sampling.steps


def test_saved_world_gets_the_users_default_modes(small_config, tmp_path):
    # Staging in mkdtemp (0700) and safetensors (0600) must not leave a world private.
    import os

    umask = os.umask(0o022)
    try:
        target = World(small_config).save(tmp_path / "w")
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in target.iterdir()} == {
        "config.json": 0o644,
        "model.safetensors": 0o644,
    }


def test_clean_context_leaves_whole_frames_unmasked(small_config):
    """dynamics.clean_context: a share of frames after the first is whole context (no masked
    token), the rest masked at the sample's rate; each clip keeps at least one target."""
    tokens = _tokens(small_config, b=8, t=4)
    g = torch.Generator().manual_seed(0)

    def whole_frames(clean: float) -> torch.Tensor:
        small_config.dynamics.clean_context = clean
        out = Dynamics(small_config).train().masked_loss(tokens, _actions(small_config, b=8), g)
        return ~out["mask"][:, 1:].any(dim=2)  # (B, T-1): frames with no masked token

    assert not whole_frames(0.0).any()  # the paper's recipe: every frame masked
    half = whole_frames(0.5)
    assert 0.2 < float(half.float().mean()) < 0.8
    assert not whole_frames(0.99).all(dim=1).any()  # never a clip with nothing to predict


def test_context_noise_swaps_visible_later_tokens_for_random_codes(small_config):
    """dynamics.context_noise: up to that share of the visible tokens after frame 0 are random
    codes in the model's inputs; frame 0, the masked tokens and the targets stay as they were,
    and with 0 the inputs are the clean masked clip."""
    tokens = _tokens(small_config, b=8, t=4)
    actions = _actions(small_config, b=8)

    def inputs_and_loss(noise: float) -> tuple[torch.Tensor, dict]:
        small_config.dynamics.context_noise = noise
        dyn = Dynamics(small_config).train()
        torch.manual_seed(0)
        dyn.load_state_dict(Dynamics(small_config).state_dict())  # same weights each call
        seen = []
        forward = dyn.logits
        dyn.logits = lambda x, a: (seen.append(x.clone()), forward(x, a))[1]
        out = dyn.masked_loss(tokens, actions, torch.Generator().manual_seed(0))
        return seen[0], out

    clean, clean_out = inputs_and_loss(0.0)
    assert torch.equal(
        clean, tokens.masked_fill(clean_out["mask"], small_config.tokenizer.quantizer.num_codes)
    )
    noisy, out = inputs_and_loss(0.9)
    mask = out["mask"]
    assert torch.equal(noisy[:, 0], tokens[:, 0])  # the prompt frame is never corrupted
    assert (noisy[mask] == small_config.tokenizer.quantizer.num_codes).all()  # masked stay masked
    swapped = (noisy != tokens) & ~mask  # (B, T, N)
    assert 0.1 < float(swapped[:, 1:][~mask[:, 1:]].float().mean()) < 0.9
    assert int(noisy.max()) < small_config.tokenizer.quantizer.num_codes + 1
    # Per sample: the share swapped differs (drawn from U(0, x)), so some clips are nearly clean.
    per_clip = swapped[:, 1:].flatten(1).float().sum(1) / (~mask[:, 1:]).flatten(1).sum(1).clamp(
        min=1
    )
    assert float(per_clip.max() - per_clip.min()) > 0.2


def test_context_noise_neighbours_swap_tokens_for_near_codes(small_config):
    """dynamics.context_noise_neighbours: a swapped context token becomes one of its own
    code's k nearest codes in the codebook (never itself), where 0 draws from every code."""
    codes = small_config.tokenizer.quantizer.num_codes
    codebook = torch.randn(codes, 8, generator=torch.Generator().manual_seed(1))  # (V, C)
    dist = torch.cdist(codebook, codebook)
    rank = dist.argsort(-1).argsort(-1)  # rank[i, j]: j's place among i's neighbours (0: i)
    tokens = _tokens(small_config, b=8, t=4)
    actions = _actions(small_config, b=8)
    small_config.dynamics.context_noise = 0.9

    def swapped_ranks(k: int) -> torch.Tensor:
        dyn = Dynamics(small_config).train()
        dyn.set_noise_neighbours(codebook, k)
        seen = []
        forward = dyn.logits
        dyn.logits = lambda x, a: (seen.append(x.clone()), forward(x, a))[1]
        out = dyn.masked_loss(tokens, actions, torch.Generator().manual_seed(0))
        swapped = (seen[0] != tokens) & ~out["mask"]  # (B, T, N)
        return rank[tokens[swapped], seen[0][swapped]]

    near = swapped_ranks(3)
    assert near.numel() > 20 and int(near.min()) >= 1 and int(near.max()) <= 3
    assert set(near.tolist()) == {1, 2, 3}  # each of the k nearest is drawn
    assert int(swapped_ranks(0).max()) > 3 * codes // 4  # any code: far ones too


def test_changed_weight_weighs_the_tokens_that_moved(small_config):
    """dynamics.changed_weight: a masked target that differs from the same place in the frame
    before counts that much in the cross-entropy, one that does not counts 1; 1 is the plain
    mean, and a clip where nothing changes scores the same whatever the weight."""
    import torch.nn.functional as F

    tokens = _tokens(small_config, b=4, t=4)
    tokens[:, 2] = tokens[:, 1]  # frame 2 repeats frame 1: its targets are unchanged
    tokens[:, 3, : tokens.shape[2] // 2] = tokens[:, 2, : tokens.shape[2] // 2]  # half of 3
    actions = _actions(small_config, b=4)

    def loss_and_logits(clip: torch.Tensor, weight: float) -> tuple[dict, torch.Tensor]:
        small_config.dynamics.changed_weight = weight
        torch.manual_seed(0)
        dyn = Dynamics(small_config).train()
        seen = []
        forward = dyn.logits
        dyn.logits = lambda x, a: (seen.append(forward(x, a)), seen[-1])[1]
        return dyn.masked_loss(clip, actions, torch.Generator().manual_seed(0)), seen[0]

    plain, logits = loss_and_logits(tokens, 1.0)
    mask = plain["mask"]
    ce = F.cross_entropy(logits[mask].float(), tokens[mask], reduction="none")
    assert float(plain["loss"]) == pytest.approx(float(ce.mean()), rel=1e-5)
    weighted, _ = loss_and_logits(tokens, 5.0)
    changed = torch.zeros_like(mask)
    changed[:, 1:] = tokens[:, 1:] != tokens[:, :-1]
    w = 1.0 + 4.0 * changed[mask].float()
    assert 0 < int(changed[mask].sum()) < int(mask.sum())  # both kinds among the targets
    assert float(weighted["loss"]) == pytest.approx(float((ce * w).sum() / w.sum()), rel=1e-5)
    assert float(weighted["loss"]) != pytest.approx(float(plain["loss"]), rel=1e-3)
    still = tokens[:, :1].expand_as(tokens).clone()  # nothing moves
    a, _ = loss_and_logits(still, 1.0)
    b, _ = loss_and_logits(still, 5.0)
    assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-6)


def test_hide_context_hides_a_share_of_later_frames_in_a_fixed_pattern(small_config):
    """sampling.context_mask: each context frame but the first loses that share of its tokens
    to the mask token, in a pattern fixed by the frame's number (reproducible); 0 hides none."""
    dyn = Dynamics(small_config)
    tokens = _tokens(small_config, b=4, t=6)
    seen = dyn.hide_context(tokens, 0, 0.5)
    hidden = seen == dyn.mask_id  # (B, T, N)
    assert not hidden[:, 0].any() and torch.equal(seen[~hidden], tokens[~hidden])
    assert 0.35 < float(hidden[:, 1:].float().mean()) < 0.65
    assert torch.equal(dyn.hide_context(tokens[:, 2:], 2, 0.5), seen[:, 2:])  # by frame number
    assert torch.equal(dyn.hide_context(tokens, 1, 0.5)[:, 0] == dyn.mask_id, hidden[:, 1])
    # Every row alike, as play's one row: eval's figures do not depend on how clips are batched.
    assert torch.equal(hidden, hidden[:1].expand_as(hidden))
    assert torch.equal(dyn.hide_context(tokens[3:], 0, 0.5) == dyn.mask_id, hidden[:1])
    assert torch.equal(dyn.hide_context(tokens, 0, 0.0), tokens)


@pytest.mark.parametrize("field, value", [("context_mask", 0.75), ("min_p", 0.5)])
def test_sampling_setting_is_what_a_world_loads_and_changes_its_frames(
    small_config, tmp_path, field, value
):
    """A World's config.json sampling.context_mask / sampling.min_p reaches its play sessions;
    they then sample other frames from the same seed than at 0 (whole context frames; the
    whole softmax)."""
    setattr(small_config.sampling, field, value)
    torch.manual_seed(0)
    World(small_config).save(tmp_path / "w")
    world = World.load(tmp_path / "w")
    assert getattr(world.sampling, field) == value

    def frames() -> list:
        session = world.new_session()
        session.sampling.steps = 2
        session.reset(np.zeros((32, 32, 3), np.uint8), seed=3)
        return [session.next_tokens(0).clone() for _ in range(4)]

    changed = frames()
    setattr(world.sampling, field, 0.0)  # sessions copy the world's settings when made
    assert any(not torch.equal(a, b) for a, b in zip(changed, frames(), strict=True))
