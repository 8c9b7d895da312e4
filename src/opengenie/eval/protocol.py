"""The evaluation protocol (DESIGN.md "Evaluation protocol"): clips, rollouts, ΔtPSNR, actions.

One pass over N test clips of 16 frames (one per episode where possible) computes everything
``opengenie eval`` reports:

- tokenizer: PSNR/SSIM of the reconstruction of every frame of every clip;
- LAM: the 15 actions it infers per clip; the codes "in use" (>= 1% of those actions);
- x̂: from the clip's first real frame, 15 frames generated with the inferred actions (MaskGIT,
  25 steps, temperature 1, random sampling). Frame t = 4 scores ΔtPSNR; all 15 give PSNR
  against the horizon and are the generated clips of FVD;
- x̂′: the same prompt and seed, t frames generated with actions drawn uniformly from the codes
  in use: ΔtPSNR = PSNR(x_t, x̂_t) - PSNR(x_t, x̂′_t) per clip, then mean and bootstrap interval;
- teacher-forced next frame: real frames 0..k-1 as context, frame k generated and scored, at
  one position k per clip (positions 1..15 balanced over the clips: an unbiased estimate of the
  mean over positions at 1/15 of the cost of scoring every position);
- action consistency: NMI and best code -> movement mapping against the true actions, grouped
  into the movements that differ in the game.

Frames are generated through the dynamics model's key/value cache (each MaskGIT step costs one
frame's tokens, not the whole window's); within the training window this is exact (tested
against ``maskgit.rollout``). Generation noise comes from one seeded generator per batch, reset
before x̂ and before x̂′, so both draw identical noise ("same seeds for both").

This module only orders the passes and assembles metrics.json; each lives in a module of its
own: ``clips`` (which clips), ``reconstruction`` (tokenizer + LAM), ``delta_psnr`` (rollouts),
``next_frame``, ``fvd_section``, ``action_consistency``, ``control`` (held keys), ``buttons``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from opengenie.data.loader import clip_span
from opengenie.errors import UserError
from opengenie.eval.action_consistency import actions_section, codes_in_use
from opengenie.eval.buttons import button_strips
from opengenie.eval.clips import (  # re-exported: the protocol's public names
    Clip,
    load_clips,
    select_clips,
    true_action_labels,
)
from opengenie.eval.control import key_pairing
from opengenie.eval.delta_psnr import delta_entry, score_rollouts
from opengenie.eval.fvd_section import FVDOptions, fvd_section, real_stats_key
from opengenie.eval.metrics import PSNR_CAP, key_names
from opengenie.eval.next_frame import score_next_frames
from opengenie.eval.reconstruction import reconstruct, tokenizer_section
from opengenie.eval.rollout import cached_rollout
from opengenie.eval.settings import PLAY_STEPS, EvalSettings

__all__ = [
    "PLAY_STEPS",
    "Clip",
    "EvalResult",
    "EvalSettings",
    "FVDOptions",
    "cached_rollout",
    "evaluate",
    "load_clips",
    "real_stats_key",
    "select_clips",
    "true_action_labels",
]


class _Timer:
    """Wall-clock seconds per part, for metrics.json and the runtime breakdown."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass
class EvalResult:
    """metrics.json content plus the arrays the report draws."""

    metrics: dict[str, Any]
    pictures: dict[str, Any]
    action_map: dict[str, Any] | None


def _choose_clips(dataset: Any, s: EvalSettings, stride: int, log: Callable) -> list[Clip]:
    ids = dataset.episode_ids(s.split)
    span = clip_span(s.clip_frames, stride)
    clips = select_clips(dataset.ep_length[ids], ids, s.clips, span, s.seed)
    if not clips:
        raise UserError(
            f"{dataset.path} has no {s.split} episodes of >= {span} frames to evaluate on: add "
            f"some with `opengenie data coinrun --out {dataset.path} --split {s.split} "
            f"--episodes 256`"
        )
    if len(clips) < s.clips:
        log(
            f"warning: the {s.split} split has room for only {len(clips)} clips of "
            f"{s.clip_frames} frames (asked for {s.clips}); add episodes for the protocol's >= 256"
        )
    return clips


@torch.no_grad()
def evaluate(
    world: Any,
    dataset: Any,
    settings: EvalSettings,
    progress: bool = True,
    fvd: FVDOptions | None = None,
    log: Callable[[str], None] = print,
) -> EvalResult:
    """Run the protocol on ``settings.clips`` clips of ``dataset``'s split.

    ``world`` needs ``tokenizer.encode/decode``, ``lam.infer/action_vectors``, ``num_actions``,
    ``dynamics`` (``step_logits``, ``commit(tokens, action, cache, context_mask)``,
    ``transformer.new_cache``, ``mask_id``) and ``config.frames/image_size``. ``fvd`` None
    leaves FVD out (``value`` null, with the reason).
    """
    s = settings.check()
    timer = _Timer()
    device = world.device if hasattr(world, "device") else torch.device("cpu")
    size = int(world.config.image_size)
    if tuple(dataset.frame_size) != (size, size):
        h, w = dataset.frame_size
        raise UserError(
            f"the data's frames are {h}x{w} but the world expects {size}x{size}: evaluate on "
            "data recorded at the world's frame size"
        )
    window = int(world.config.frames)
    t_len = s.clip_frames
    stride = int(world.config.frame_skip)  # game frames per world step
    with timer.part("select_clips"):
        clips = _choose_clips(dataset, s, stride, log)
    n = len(clips)
    with timer.part("load_clips"):
        real = load_clips(dataset, clips, t_len, stride)  # uint8 (N, T, H, W, 3)
    precision = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if s.dynamics_precision == "bf16"
        else contextlib.nullcontext()
    )

    with timer.part("tokenizer_lam"):
        rec = reconstruct(world, real, s.batch_size, device, progress)
    used, _ = codes_in_use(rec.codes, int(world.num_actions), s.used_code_fraction)
    # one generator, in this order, for x̂′'s actions and then the next-frame positions
    rng = np.random.default_rng([s.seed, 1])
    random_codes = used[rng.integers(0, used.size, size=(n, t_len - 1))]  # (N, T-1)
    with timer.part("rollouts"):
        rolls = score_rollouts(
            world, real, rec.tokens, rec.codes, random_codes, s, window, precision, progress
        )
    positions = 1 + rng.permutation(n) % (t_len - 1)  # (N,) in 1..T-1
    with timer.part("next_frame"):
        nxt = score_next_frames(
            world, real, rec.tokens, rec.codes, positions, s, window, precision, progress
        )

    m = n if s.fvd_clips is None else min(s.fvd_clips, n)
    with timer.part("fvd"):
        fvd_out = _fvd(dataset, s, clips[:m], real[:m], rolls.generated[:m], fvd, stride)

    labels, group_names = true_action_labels(dataset, clips, t_len, stride)
    actions, action_map = actions_section(
        rec.codes, labels, group_names, int(world.num_actions), s.used_code_fraction
    )

    # control with held keys: its pairing of keys and codes is the one play gets
    with timer.part("control"):
        control, control_pics = _control(world, dataset, s, precision, progress, log)
    keys, pairing = _play_keys(world, control)
    if keys:
        names = key_names(keys)
        action_map = {**(action_map or {}), "names": names, "keys": keys, "pairing": pairing}
        actions["keys"] = keys

    with timer.part("buttons"):
        buttons = button_strips(world, rec.tokens, s, window, device, precision)

    samplings = s.samplings
    metrics = {
        "tokenizer": tokenizer_section(rec, s.bootstrap_resamples, s.seed),
        "dynamics": {
            **nxt.section(t_len),
            "rollout_psnr": [float(v) for v in rolls.psnr[:, 1:].mean(axis=0)],
            "rollout_ssim": [float(v) for v in rolls.ssim[:, 1:].mean(axis=0)],
            "delta_t_psnr": delta_entry(samplings[0], rolls, s),
            "delta_t_psnr_extra": [delta_entry(k, rolls, s) for k in samplings[1:]],
        },
        "fvd": fvd_out,
        "actions": actions,
        "control": control,
        "settings": _settings_entry(s, clips, stride, m, window),
        "timing": {k: round(v, 2) for k, v in timer.seconds.items()},
    }
    pictures = {
        "real": real[:4],
        "recon": rec.pictures,
        "generated": rolls.generated[:4],
        "random": rolls.random_pictures,
        "buttons": buttons,
        "control": control_pics,
        "clips": [(c.episode, c.start) for c in clips[:4]],
        "t": s.t,
    }
    return EvalResult(metrics, pictures, action_map)


def _settings_entry(
    s: EvalSettings, clips: list[Clip], stride: int, fvd_clips: int, window: int
) -> dict[str, Any]:
    """metrics.json's ``settings``: everything that decided the numbers."""
    return {
        "split": s.split,
        "clips": len(clips),
        "clips_requested": s.clips,
        "episodes": len({c.episode for c in clips}),
        "seed": s.seed,
        "clip_frames": s.clip_frames,
        "frame_skip": stride,
        "t": s.t,
        "steps": s.steps,
        "temperature": s.temperature,
        "mode": s.mode,
        "guidance": s.guidance,
        "context_mask": s.context_mask,
        "min_p": s.min_p,
        "protocol": s.is_protocol,
        "extra": [{"steps": k[0], "temperature": k[1]} for k in s.samplings[1:]],
        "random_actions": "uniform over codes_used",
        "used_code_fraction": s.used_code_fraction,
        "next_frame_positions": "one per clip, balanced over 1..T-1",
        "fvd_clips": fvd_clips,
        "batch_size": s.batch_size,
        "dynamics_precision": s.dynamics_precision,
        "bootstrap": {"resamples": s.bootstrap_resamples, "level": 0.95},
        "window": window,
        "psnr_cap_db": PSNR_CAP,
    }


def _fvd(
    dataset: Any,
    s: EvalSettings,
    clips: list[Clip],
    real: np.ndarray,
    generated: np.ndarray,
    fvd: FVDOptions | None,
    stride: int,
) -> dict[str, Any]:
    """FVD of the first clips (already cut to --fvd-clips), or why it was skipped."""
    if len(clips) < 2:
        why = "--fvd-clips 0" if s.fvd_clips == 0 else "FVD needs >= 2 clips"
        return {"value": None, "n": len(clips), "reason": f"skipped ({why})"}
    if fvd is None:
        return {"value": None, "n": len(clips), "reason": "skipped"}
    return fvd_section(dataset, s.split, clips, real, generated, fvd, stride)


def _play_keys(world: Any, control: dict[str, Any] | None) -> tuple[dict[str, int], str]:
    """The keys play sends: the control section's pairing; without one (no game to replay, or
    --control-levels 0) a world trained with label codes still knows each code's key, so the
    clips' one-to-one pairing must not replace it (other worlds: no keys)."""
    if control is not None and control["keys"]:
        return control["keys"], control["pairing"]
    return key_pairing(world, None)


def _control(
    world: Any,
    dataset: Any,
    s: EvalSettings,
    precision: Any,
    progress: bool,
    log: Callable[[str], None],
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The held-key control section on the split's first CoinRun levels, or None (with a log
    line) where the game cannot be replayed: other sources, or Procgen not installed."""
    from opengenie.data.coinrun import procgen_source

    if s.control_levels == 0:
        return None, {}
    levels = np.unique(dataset.levels(s.split, procgen_source("coinrun")))[: s.control_levels]
    if levels.size == 0:
        log("control: skipped (no CoinRun levels in this split to replay)")
        return None, {}
    try:
        from opengenie.eval.control import ControlSettings, control_section
        from opengenie.eval.held_keys import record_held_keys

        held = record_held_keys(levels, progress=progress)
    except ImportError:
        log("control: skipped (Procgen is not installed: pip install 'opengenie[coinrun]')")
        return None, {}
    cs = ControlSettings(
        s.steps, s.temperature, s.mode, s.seed, s.batch_size, s.guidance, s.context_mask, s.min_p
    )
    # The same held keys at each extra sampling setting (e.g. play's steps): bars only, so
    # that speed and control can be weighed setting by setting (bench play joins them).
    extra = [
        replace(cs, steps=steps, temperature=temperature)
        for steps, temperature in s.extra
        if (steps, temperature) != (s.steps, s.temperature)
    ]
    return control_section(world, held, cs, precision, progress, extra)
