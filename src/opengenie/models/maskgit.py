"""MaskGIT decoding of one frame's tokens, and autoregressive rollouts frame by frame."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from opengenie.models.dynamics import Dynamics

LogitsFn = Callable[[torch.Tensor], torch.Tensor]  # tokens (B, N) -> logits (B, N, V)


def guided(logits_fn: LogitsFn, reference_fn: LogitsFn, weight: float) -> LogitsFn:
    """Action guidance: logits(a) + weight * (logits(a) - logits(reference)), where
    `reference_fn` gives the logits under a reference action (standing still). Like
    classifier-free guidance with "no key pressed" as the baseline: what the held key changes
    is amplified, and holding the reference itself is left as it was. Two passes a step."""
    if weight == 0:
        return logits_fn

    def fn(tokens: torch.Tensor) -> torch.Tensor:
        logits = logits_fn(tokens).float()  # (B, N, V)
        return logits + weight * (logits - reference_fn(tokens).float())

    return fn


def maskgit_fill(
    logits_fn: LogitsFn,
    batch: int,
    num_tokens: int,
    mask_id: int,
    steps: int = 25,
    temperature: float = 1.0,
    mode: str = "random",
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    min_p: float = 0.0,
) -> torch.Tensor:
    """Fill a fully masked frame in `steps` parallel decoding steps (Chang et al., 2022).

    Each step predicts every masked token, keeps the most confident ones and re-masks the rest;
    the number left masked follows a cosine schedule and reaches 0 at the last step. In
    "random" mode tokens are sampled from softmax(logits / temperature) and the confidence gets
    Gumbel noise that fades over the steps; "argmax" is greedy and deterministic. Returns
    token ids (B, N). The last step keeps its samples: no forced argmax (Jasmine's fix).
    `min_p` > 0 (min-p sampling, Nguyen et al. 2024) drops each token's codes less likely than
    min_p times its likeliest one before temperature: the long tail of unlikely codes, where a
    still scene's drift comes from, while the choices the model is unsure between stay.
    """
    if steps < 1 or temperature <= 0 or mode not in ("random", "argmax"):
        raise ValueError("need steps >= 1, temperature > 0 and mode 'random' or 'argmax'")
    if not 0 <= min_p <= 1:  # 1 keeps only the likeliest code: greedy
        raise ValueError(f"need 0 <= min_p <= 1, got {min_p}")
    log_min_p = math.log(min_p) if min_p > 0 else None
    tokens = torch.full((batch, num_tokens), mask_id, dtype=torch.long, device=device)
    known = torch.zeros(batch, num_tokens, dtype=torch.bool, device=device)
    for step in range(steps):
        logits = logits_fn(tokens).float()  # (B, N, V)
        if mode == "random":
            if log_min_p is not None:  # the likeliest code always stays
                floor = logits.amax(-1, keepdim=True) + log_min_p  # (B, N, 1)
                logits = logits.masked_fill(logits < floor, -math.inf)
            logits = logits / temperature
            # Gumbel-max: argmax(logits + Gumbel noise) is an exact draw from the softmax, and
            # ~3x cheaper here than torch.multinomial over B*N rows of V codes.
            noise = torch.rand(logits.shape, generator=generator, device=device)
            noise = noise.clamp_(1e-20, 1 - 1e-7).log_().neg_().log_().neg_()
            sampled = (logits + noise).argmax(-1)
        else:
            sampled = logits.argmax(-1)
        # log p(sampled) = logit - logsumexp(logits): the confidence, without a full softmax.
        chosen = logits.gather(-1, sampled[..., None]).squeeze(-1)
        confidence = (chosen - logits.logsumexp(-1)).clamp(min=-46.0)  # log(1e-20) as before
        if mode == "random":
            uniform = torch.rand(confidence.shape, generator=generator, device=device)
            gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1 - 1e-7)))
            confidence = confidence + temperature * (1 - (step + 1) / steps) * gumbel
        sampled = torch.where(known, tokens, sampled)
        confidence = confidence.masked_fill(known, math.inf)
        still_masked = int(num_tokens * math.cos(math.pi / 2 * (step + 1) / steps))
        # Always reveal at least one new token per step while any remain masked.
        masked_now = num_tokens - int(known[0].sum())
        still_masked = min(still_masked, max(masked_now - 1, 0))
        keep = num_tokens - still_masked
        order = confidence.argsort(dim=-1, descending=True)
        known = torch.zeros_like(known).scatter_(1, order[:, :keep], True)
        tokens = torch.where(known, sampled, torch.full_like(sampled, mask_id))
    return tokens


@torch.no_grad()
def rollout(
    dynamics: Dynamics,
    prompt: torch.Tensor,
    actions: torch.Tensor,
    steps: int = 25,
    temperature: float = 1.0,
    mode: str = "random",
    generator: torch.Generator | None = None,
    window: int = 16,
    guidance: float = 0.0,
    still: torch.Tensor | None = None,
    context_mask: float = 0.0,
    min_p: float = 0.0,
) -> torch.Tensor:
    """Generate frames one by one by recomputing over the last `window` frames (no cache).

    prompt: tokens (B, t0, N); actions: code vectors (B, t0 - 1 + F, A), one per transition.
    Returns tokens (B, t0 + F, N). Past the window only the latest frames are re-encoded, and
    the window's first frame is then hidden too (`Dynamics.hide_context` numbers frames from the
    rollout's start); the cached path agrees with this one inside the window only.
    With `guidance` > 0, sampling is guided against the still action's vector `still` (1, A).
    `context_mask` hides that share of the context frames' tokens (`Dynamics.hide_context`);
    `min_p` truncates each token's codes (`maskgit_fill`).
    """
    b, t0, n = prompt.shape
    frames = actions.shape[1] + 1 - t0
    actions = actions.to(dynamics.pos.dtype)  # e.g. bf16 dynamics (World.set_dynamics_dtype)
    tokens = prompt
    for _ in range(frames):
        t = tokens.shape[1]
        start = max(0, t + 1 - window)
        context, acts = tokens[:, start:], actions[:, start:t]  # acts lead into frames start+1..t
        context = dynamics.hide_context(context, start, context_mask)

        def logits_fn(current: torch.Tensor, context=context, acts=acts) -> torch.Tensor:
            clip = torch.cat((context, current[:, None]), dim=1)  # (B, t'+1, N)
            return dynamics.logits(clip, acts)[:, -1]

        fill = logits_fn
        if guidance:  # the same history, the still action leading into the new frame
            held = torch.cat((acts[:, :-1], still.to(acts.dtype).expand(b, 1, -1)), dim=1)
            fill = guided(logits_fn, lambda cur, c=context, a=held: logits_fn(cur, c, a), guidance)
        new = maskgit_fill(
            fill, b, n, dynamics.mask_id, steps, temperature, mode, generator, prompt.device, min_p
        )
        tokens = torch.cat((tokens, new[:, None]), dim=1)
    return tokens
