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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from opengenie.config import PLAY_STEPS  # reported beside the protocol's 25 steps
from opengenie.data.loader import clip_span
from opengenie.errors import UserError
from opengenie.eval.metrics import (
    PSNR_CAP,
    best_mapping_accuracy,
    bootstrap_ci,
    key_assignment,
    key_names,
    nmi,
    ssim,
)
from opengenie.eval.metrics import capped_psnr as _capped_psnr
from opengenie.eval.rollout import batch_generator as _batch_generator
from opengenie.eval.rollout import cached_rollout
from opengenie.eval.rollout import to_uint8 as _to_uint8

CLIP_FRAMES = 16  # the protocol's clip length (tokenizer, rollouts and FVD)
PROTOCOL_T = 4  # ΔtPSNR is always reported at t = 4 (paper §3)
PROTOCOL_STEPS = 25
PROTOCOL_TEMPERATURE = 1.0
PROTOCOL_MODE = "random"
USED_CODE_FRACTION = 0.01  # a code is "in use" when >= 1% of the inferred actions pick it
BUTTON_FRAMES = 8  # frames per strip in "what each button does"


@dataclass(frozen=True)
class Clip:
    """A window of frames [start, start + frames) of one episode."""

    episode: int
    start: int


@dataclass
class EvalSettings:
    """Everything that decides the numbers; recorded next to them in metrics.json."""

    split: str = "test"
    clips: int = 256
    seed: int = 0
    clip_frames: int = CLIP_FRAMES
    t: int = PROTOCOL_T
    steps: int = PROTOCOL_STEPS
    temperature: float = PROTOCOL_TEMPERATURE
    mode: str = PROTOCOL_MODE
    extra: list[tuple[int, float]] = field(default_factory=lambda: [(PLAY_STEPS, 1.0)])
    batch_size: int = 32
    fvd_clips: int | None = None  # None: all clips; 0: skip FVD
    used_code_fraction: float = USED_CODE_FRACTION
    bootstrap_resamples: int = 10_000
    dynamics_precision: str = "bf16"  # "bf16": bf16 autocast for the dynamics model; "fp32"
    button_prompts: int = 2
    control_levels: int = 32  # levels of the held-key control measurement (0: skip)

    def check(self) -> EvalSettings:
        if self.clips < 2:
            raise UserError(
                f"--clips must be >= 2 (the protocol asks for >= 256), got {self.clips}"
            )
        if not 1 <= self.t < self.clip_frames:
            raise UserError(f"--t must be in 1..{self.clip_frames - 1}, got {self.t}")
        for steps, temperature in [(self.steps, self.temperature), *self.extra]:
            if steps < 1:
                raise UserError(f"MaskGIT steps must be >= 1, got {steps}")
            if not temperature > 0:
                raise UserError(f"temperature must be > 0, got {temperature}")
        if self.mode not in ("random", "argmax"):
            raise UserError(f"mode must be 'random' or 'argmax', got {self.mode!r}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.fvd_clips is not None and self.fvd_clips < 0:
            raise UserError(f"--fvd-clips must be >= 0, got {self.fvd_clips}")
        if self.dynamics_precision not in ("bf16", "fp32"):
            raise UserError(f"precision must be bf16 or fp32, got {self.dynamics_precision!r}")
        if self.control_levels < 0:
            raise UserError(f"--control-levels must be >= 0, got {self.control_levels}")
        return self

    @property
    def is_protocol(self) -> bool:
        """True when the headline ΔtPSNR uses the protocol's settings exactly."""
        return (
            self.t == PROTOCOL_T
            and self.steps == PROTOCOL_STEPS
            and self.temperature == PROTOCOL_TEMPERATURE
            and self.mode == PROTOCOL_MODE
            and self.used_code_fraction == USED_CODE_FRACTION
            and self.clip_frames == CLIP_FRAMES
        )


# -- clips -----------------------------------------------------------------------------------


def select_clips(
    lengths: np.ndarray, episode_ids: np.ndarray, n: int, frames: int, seed: int
) -> list[Clip]:
    """N clips of ``frames`` frames, one per episode where possible (seeded).

    With at least N long-enough episodes, N of them are drawn without replacement and each gives
    one clip at a random start. With fewer, every episode gives one and the rest are spread
    round-robin (in a random order) over episodes with room for another non-overlapping window;
    an episode with k clips is cut into k equal segments, one clip at a random start in each.
    Returns at most N clips (fewer when the split has no room for more), sorted.
    """
    rng = np.random.default_rng(seed)
    ok = lengths >= frames
    eps, lens = episode_ids[ok], lengths[ok]
    if eps.size == 0:
        return []
    if n <= eps.size:
        pick = np.sort(rng.choice(eps.size, size=n, replace=False))
        counts = np.zeros(eps.size, dtype=np.int64)
        counts[pick] = 1
    else:
        counts = np.ones(eps.size, dtype=np.int64)
        capacity = lens // frames  # non-overlapping windows per episode
        left = n - eps.size
        order = rng.permutation(eps.size)
        while left > 0:
            grew = False
            for i in order:
                if left > 0 and counts[i] < capacity[i]:
                    counts[i] += 1
                    left -= 1
                    grew = True
            if not grew:
                break
    clips: list[Clip] = []
    for ep, length, k in zip(eps, lens, counts, strict=True):
        seg = int(length) // max(int(k), 1)
        for j in range(int(k)):
            start = j * seg + int(rng.integers(0, seg - frames + 1))
            clips.append(Clip(int(ep), start))
    return sorted(clips, key=lambda c: (c.episode, c.start))


def load_clips(dataset: Any, clips: list[Clip], frames: int, stride: int = 1) -> np.ndarray:
    """uint8 (N, frames, H, W, 3) from a ``Dataset``: every ``stride``-th frame from each start
    (a world with a frame skip steps ``stride`` game frames at a time)."""
    span = clip_span(frames, stride)
    return np.stack(
        [np.asarray(dataset.frames(c.episode)[c.start : c.start + span : stride]) for c in clips]
    )


def true_action_labels(
    dataset: Any, clips: list[Clip], frames: int, stride: int = 1
) -> tuple[np.ndarray, list[str]]:
    """Grouped true actions of each transition: labels int64 (N, frames-1), -1 unknown, and the
    group names the labels index. With a ``stride`` k, a transition's label is known only
    where its k game actions have the same label.

    CoinRun's 15 Procgen ids collapse to its 6 movements (``coinrun_action_group``); in other
    sources ids are grouped by their stored action names, so ids with the same name (e.g. two
    no-ops) count as one; a source without names keeps its raw ids ("action 3").
    """
    from opengenie.data.coinrun import COINRUN_GROUP_NAMES, coinrun_action_group

    names: list[str] = []
    index: dict[str, int] = {}

    def label_of(name: str) -> int:
        if name not in index:
            index[name] = len(names)
            names.append(name)
        return index[name]

    labels = np.full((len(clips), frames - 1), -1, dtype=np.int64)
    for row, clip in enumerate(clips):
        episode = dataset.episode(clip.episode)
        if not episode.has_actions:
            continue
        # a[t] is taken after frame t: transition t -> t+1 of the clip is a[start + t].
        raw = dataset.actions(clip.episode)[
            clip.start : clip.start + clip_span(frames, stride) - 1
        ]  # (k * (frames-1),)
        if episode.source.startswith("procgen:coinrun"):
            groups = coinrun_action_group(raw)
            text = [COINRUN_GROUP_NAMES[g] if g >= 0 else None for g in groups]
        else:
            info = dataset.source_info.get(episode.source, {})
            action_names = list(info.get("action_names") or [])
            text = [
                None
                if a < 0
                else (action_names[a] if a < len(action_names) else f"action {int(a)}")
                for a in raw
            ]
        ids = np.array([-1 if s is None else label_of(str(s)) for s in text], dtype=np.int64)
        steps = ids.reshape(frames - 1, stride)  # (frames-1, k): one row per world step
        agree = (steps == steps[:, :1]).all(axis=1)
        labels[row] = np.where(agree, steps[:, 0], -1)
    return labels, names


# -- generation -------------------------------------------------------------------------------


def _to_float(frames: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(frames)).to(device).float().div_(255.0)


def _batches(n: int, size: int) -> Iterator[tuple[int, slice]]:
    for i, start in enumerate(range(0, n, size)):
        yield i, slice(start, min(start + size, n))


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


# -- FVD ------------------------------------------------------------------------------------


@dataclass
class FVDOptions:
    """Where real-data I3D statistics are cached, and how I3D runs."""

    cache_dir: str | Path | None = None  # None: $XDG_CACHE_HOME/opengenie/fvd (~/.cache/...)
    device: str | torch.device = "cpu"
    batch_size: int = 8
    progress: bool = True


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "opengenie" / "fvd"


def real_stats_key(
    dataset: Any, split: str, clips: list[Clip], frames: int, stride: int = 1
) -> str:
    """What the cached real statistics describe: this dataset's contents (its dataset.json
    lists every committed shard, so appending episodes changes it), split and exact clips."""
    meta = (Path(dataset.path) / "dataset.json").read_bytes()
    key = {
        "dataset": str(Path(dataset.path).resolve()),
        "dataset_json_sha1": hashlib.sha1(meta).hexdigest(),
        "split": split,
        "frames": frames,
        "clips": [[c.episode, c.start] for c in clips],
    }
    if stride != 1:  # (absent at 1, so that caches written before frame skips still match)
        key["stride"] = stride
    return json.dumps(key, sort_keys=True)


def fvd_section(
    dataset: Any,
    split: str,
    clips: list[Clip],
    real: np.ndarray,
    generated: np.ndarray,
    options: FVDOptions,
    stride: int = 1,
) -> dict[str, Any]:
    """FVD between real and generated uint8 clips (M, T, H, W, 3): the ``fvd`` section.

    ``value`` is None, with the ``reason``, when the I3D weights are not installed.
    """
    from opengenie.eval import fvd as fvd_mod
    from opengenie.eval.i3d import load_i3d

    m = len(clips)
    try:
        model, reason = load_i3d(options.device)
    except (OSError, ValueError, pickle.UnpicklingError) as error:  # damaged weights file
        model, reason = None, f"I3D weights could not be loaded: {error}"
    if model is None:
        return {"value": None, "n": m, "reason": reason}
    key = real_stats_key(dataset, split, clips, real.shape[1], stride)
    cache_dir = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    path = cache_dir / f"real-{hashlib.sha1(key.encode()).hexdigest()[:20]}.npz"
    kw = {"batch_size": options.batch_size, "device": options.device}
    start = time.perf_counter()
    stats = fvd_mod.load_stats(path, key)
    cached = stats is not None
    if stats is None:
        stats = fvd_mod.video_stats(real, model, progress=options.progress, **kw)
        try:
            fvd_mod.save_stats(path, stats, key)
        except OSError as error:  # a read-only cache only costs time
            print(f"warning: could not cache real I3D statistics in {cache_dir}: {error}")
    real_s = time.perf_counter() - start
    start = time.perf_counter()
    value, reason = fvd_mod.compute_fvd(stats, generated, model, progress=options.progress, **kw)
    return {
        "value": value,
        "n": m,
        "reason": reason,
        "frames": int(real.shape[1]),
        "feature": fvd_mod.FEATURE_NAME,
        "real_stats": "cached" if cached else "computed",
        "real_stats_file": str(path),
        "real_s": round(real_s, 2),
        "generated_s": round(time.perf_counter() - start, 2),
    }


# -- the evaluation ----------------------------------------------------------------------------


@dataclass
class EvalResult:
    """metrics.json content plus the arrays the report draws."""

    metrics: dict[str, Any]
    pictures: dict[str, Any]
    action_map: dict[str, Any] | None


def _interval(name: str, values: np.ndarray, resamples: int, seed: int) -> dict[str, float]:
    low, high = bootstrap_ci(values, n=resamples, seed=seed)
    return {f"{name}_ci_low": low, f"{name}_ci_high": high}


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else float("nan")


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
    ``dynamics`` (``step_logits``, ``commit``, ``transformer.new_cache``, ``mask_id``) and
    ``config.frames/image_size``. ``fvd`` None leaves FVD out (``value`` null, with the reason).
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
    ids = dataset.episode_ids(s.split)
    span = clip_span(t_len, stride)
    with timer.part("select_clips"):
        clips = select_clips(dataset.ep_length[ids], ids, s.clips, span, s.seed)
    if not clips:
        raise UserError(
            f"{dataset.path} has no {s.split} episodes of >= {span} frames to evaluate on: add "
            f"some with `opengenie data coinrun --out {dataset.path} --split {s.split} "
            f"--episodes 256`"
        )
    n = len(clips)
    if n < s.clips:
        log(
            f"warning: the {s.split} split has room for only {n} clips of {t_len} frames "
            f"(asked for {s.clips}); add episodes for the protocol's >= 256"
        )
    with timer.part("load_clips"):
        real = load_clips(dataset, clips, t_len, stride)  # uint8 (N, T, H, W, 3)
    bs = s.batch_size
    precision = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if s.dynamics_precision == "bf16"
        else contextlib.nullcontext()
    )

    # -- pass A: tokenizer reconstruction and LAM actions ----------------------------------
    rec_psnr = np.zeros((n, t_len))
    rec_ssim = np.zeros((n, t_len))
    codes = np.zeros((n, t_len - 1), dtype=np.int64)
    recon_pics = None
    with timer.part("tokenizer_lam"):
        token_parts = []
        for _, sl in tqdm(
            list(_batches(n, bs)), desc="tokenizer + LAM", unit="batch", disable=not progress
        ):
            video = _to_float(real[sl], device)  # (B, T, H, W, 3)
            ids_b = world.tokenizer.encode(video)  # (B, T, h, w)
            recon = world.tokenizer.decode(ids_b).float().clamp(0, 1)  # (B, T, H, W, 3)
            rec_psnr[sl] = _capped_psnr(recon, video).cpu().numpy()
            rec_ssim[sl] = ssim(recon, video).cpu().numpy()
            token_parts.append(ids_b.flatten(2).cpu())  # (B, T, N)
            codes[sl] = world.lam.infer(video).cpu().numpy()  # (B, T-1)
            if recon_pics is None:
                recon_pics = _to_uint8(recon[:4])
        tokens = torch.cat(token_parts)  # (N, T, N_tok)

    # -- codes in use ----------------------------------------------------------------------
    num_actions = int(world.num_actions)
    counts = np.bincount(codes.reshape(-1), minlength=num_actions)
    fraction = counts / counts.sum()
    used = np.flatnonzero(fraction >= s.used_code_fraction)
    rng = np.random.default_rng([s.seed, 1])
    random_codes = used[rng.integers(0, used.size, size=(n, t_len - 1))]  # (N, T-1)

    def vectors(c: np.ndarray) -> torch.Tensor:
        return world.lam.action_vectors(torch.as_tensor(c, device=device))  # (..., A)

    settings_list = [(s.steps, s.temperature)] + [
        e for e in s.extra if e != (s.steps, s.temperature)
    ]
    horizon = t_len - 1
    roll_psnr = np.zeros((n, t_len))
    roll_ssim = np.zeros((n, t_len))
    delta = {k: np.zeros(n) for k in settings_list}
    frame_t = {k: np.zeros(n) for k in settings_list}
    frame_t_random = {k: np.zeros(n) for k in settings_list}
    generated = np.zeros_like(real)
    random_pics = None

    # -- pass B: rollouts with inferred and with random actions -----------------------------
    with timer.part("rollouts"):
        for b, sl in tqdm(
            list(_batches(n, bs)),
            desc=f"rollouts ({horizon} frames, {s.steps} steps)",
            unit="batch",
            disable=not progress,
        ):
            video = _to_float(real[sl], device)
            prompt = tokens[sl, :1].to(device)  # (B, 1, N)
            inferred = vectors(codes[sl])  # (B, T-1, A)
            randoms = vectors(random_codes[sl])
            for k in settings_list:
                steps, temperature = k
                main = k == settings_list[0]
                length = horizon if main else s.t  # the headline setting also feeds FVD/plot
                with precision:
                    gen = _batch_generator(s.seed, b, 0, device)
                    x_hat = cached_rollout(
                        world.dynamics, prompt, inferred[:, :length], steps, temperature,
                        s.mode, gen, window,
                    )  # fmt: skip
                    gen = _batch_generator(s.seed, b, 0, device)  # same noise for x̂′
                    x_alt = cached_rollout(
                        world.dynamics, prompt, randoms[:, : s.t], steps, temperature,
                        s.mode, gen, window,
                    )  # fmt: skip
                grid = int(math.isqrt(x_hat.shape[-1]))
                dec = world.tokenizer.decode(x_hat.view(*x_hat.shape[:2], grid, grid))
                dec = dec.float().clamp(0, 1)  # (B, 1+length, H, W, 3)
                dec_alt = world.tokenizer.decode(x_alt.view(*x_alt.shape[:2], grid, grid))
                dec_alt = dec_alt.float().clamp(0, 1)
                p_hat = _capped_psnr(dec, video[:, : length + 1]).cpu().numpy()  # (B, 1+len)
                p_alt = _capped_psnr(dec_alt[:, s.t], video[:, s.t]).cpu().numpy()  # (B,)
                frame_t[k][sl] = p_hat[:, s.t]
                frame_t_random[k][sl] = p_alt
                delta[k][sl] = p_hat[:, s.t] - p_alt
                if main:
                    roll_psnr[sl] = p_hat
                    roll_ssim[sl] = ssim(dec, video).cpu().numpy()
                    generated[sl] = _to_uint8(dec)
                    if random_pics is None:
                        random_pics = _to_uint8(dec_alt[:4])

    # -- pass C: teacher-forced next frame, one balanced position per clip ------------------
    positions = 1 + rng.permutation(n) % (t_len - 1)  # (N,) in 1..T-1
    tf_psnr = np.zeros(n)
    tf_ssim = np.zeros(n)
    with timer.part("next_frame"):
        groups = [(k, np.flatnonzero(positions == k)) for k in range(1, t_len)]
        jobs = [(k, rows[i : i + bs]) for k, rows in groups for i in range(0, rows.size, bs)]
        for j, (k, rows) in enumerate(
            tqdm(jobs, desc="teacher-forced next frame", unit="batch", disable=not progress)
        ):
            video = _to_float(real[rows, k], device)  # (B, H, W, 3)
            context = tokens[rows, :k].to(device)  # (B, k, N)
            with precision:
                out = cached_rollout(
                    world.dynamics, context, vectors(codes[rows, :k]), s.steps,
                    s.temperature, s.mode, _batch_generator(s.seed, j, 1, device), window,
                )  # fmt: skip
            grid = int(math.isqrt(out.shape[-1]))
            dec = world.tokenizer.decode(out.view(*out.shape[:2], grid, grid))[:, k]
            dec = dec.float().clamp(0, 1)  # (B, H, W, 3)
            tf_psnr[rows] = _capped_psnr(dec, video).cpu().numpy()
            tf_ssim[rows] = ssim(dec, video).cpu().numpy()

    # -- FVD -------------------------------------------------------------------------------
    m = n if s.fvd_clips is None else min(s.fvd_clips, n)
    with timer.part("fvd"):
        if m < 2:
            why = "--fvd-clips 0" if s.fvd_clips == 0 else "FVD needs >= 2 clips"
            fvd_out = {"value": None, "n": m, "reason": f"skipped ({why})"}
        elif fvd is None:
            fvd_out = {"value": None, "n": m, "reason": "skipped"}
        else:
            fvd_out = fvd_section(dataset, s.split, clips[:m], real[:m], generated[:m], fvd, stride)

    # -- action consistency --------------------------------------------------------------------
    labels, group_names = true_action_labels(dataset, clips, t_len, stride)
    known = labels >= 0
    actions: dict[str, Any] = {
        "num_codes": num_actions,
        "codes_used": [int(c) for c in used],
        "code_fraction": [float(f) for f in fraction],
        "used_threshold": s.used_code_fraction,
        "transitions": int(codes.size),
    }
    action_map = None
    if known.sum() == 0:
        actions.update(
            nmi=None, accuracy=None, reason="the data has no true actions for these clips"
        )
    else:
        c, lab = codes[known], labels[known]
        acc, mapping = best_mapping_accuracy(c, lab)
        acc_1to1, _ = best_mapping_accuracy(c, lab, one_to_one=True)
        table = np.zeros((num_actions, len(group_names)), dtype=np.int64)  # (codes, groups)
        np.add.at(table, (c, lab), 1)
        keys = key_assignment(table, actions["codes_used"], group_names)
        action_map = {"names": key_names(keys), "keys": keys, "nmi": nmi(c, lab), "accuracy": acc}
        actions.update(
            nmi=action_map["nmi"],
            accuracy=acc,
            accuracy_one_to_one=acc_1to1,
            labelled_transitions=int(known.sum()),
            groups=group_names,
            mapping={str(code): group_names[g] for code, g in sorted(mapping.items())},
            keys=keys,
            contingency=table.tolist(),
        )

    # -- control with held keys (its pairing of keys and codes is the one play gets) --------
    with timer.part("control"):
        control, control_pics = _control(world, dataset, s, precision, progress, log)
    if control is not None and control["keys"]:
        keys = control["keys"]
        action_map = {
            **(action_map or {}),
            "names": key_names(keys),
            "keys": keys,
            "pairing": control["pairing"],
        }
        actions["keys"] = keys

    # -- what each button does ------------------------------------------------------------
    with timer.part("buttons"):
        buttons = _button_strips(world, tokens, s, window, device, precision)

    # -- assemble --------------------------------------------------------------------------
    r = s.bootstrap_resamples
    head = settings_list[0]
    per_t_tf = [_mean(tf_psnr[positions == k]) for k in range(1, t_len)]
    dynamics_section: dict[str, Any] = {
        "next_frame_psnr": float(tf_psnr.mean()),
        "next_frame_ssim": float(tf_ssim.mean()),
        "next_frame_psnr_by_position": per_t_tf,
        "rollout_psnr": [float(v) for v in roll_psnr[:, 1:].mean(axis=0)],
        "rollout_ssim": [float(v) for v in roll_ssim[:, 1:].mean(axis=0)],
        "delta_t_psnr": _delta_entry(head, s, delta, frame_t, frame_t_random, r, n),
        "delta_t_psnr_extra": [
            _delta_entry(k, s, delta, frame_t, frame_t_random, r, n) for k in settings_list[1:]
        ],
    }
    metrics = {
        "tokenizer": {
            "psnr": float(rec_psnr.mean()),
            "ssim": float(rec_ssim.mean()),
            **_interval("psnr", rec_psnr.mean(axis=1), r, s.seed),
            "frames": t_len,
        },
        "dynamics": dynamics_section,
        "fvd": fvd_out,
        "actions": actions,
        "control": control,
        "settings": {
            "split": s.split,
            "clips": n,
            "clips_requested": s.clips,
            "episodes": len({c.episode for c in clips}),
            "seed": s.seed,
            "clip_frames": t_len,
            "frame_skip": stride,
            "t": s.t,
            "steps": s.steps,
            "temperature": s.temperature,
            "mode": s.mode,
            "protocol": s.is_protocol,
            "extra": [{"steps": k[0], "temperature": k[1]} for k in settings_list[1:]],
            "random_actions": "uniform over codes_used",
            "used_code_fraction": s.used_code_fraction,
            "next_frame_positions": "one per clip, balanced over 1..T-1",
            "fvd_clips": m,
            "batch_size": bs,
            "dynamics_precision": s.dynamics_precision,
            "bootstrap": {"resamples": r, "level": 0.95},
            "window": window,
            "psnr_cap_db": PSNR_CAP,
        },
        "timing": {k: round(v, 2) for k, v in timer.seconds.items()},
    }
    pictures = {
        "real": real[:4],
        "recon": recon_pics,
        "generated": generated[:4],
        "random": random_pics,
        "buttons": buttons,
        "control": control_pics,
        "clips": [(c.episode, c.start) for c in clips[:4]],
        "t": s.t,
    }
    return EvalResult(metrics, pictures, action_map)


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
    cs = ControlSettings(s.steps, s.temperature, s.mode, s.seed, s.batch_size)
    # The same held keys at each extra sampling setting (e.g. play's steps): bars only, so
    # that speed and control can be weighed setting by setting (bench play joins them).
    extra = [
        ControlSettings(steps, temperature, s.mode, s.seed, s.batch_size)
        for steps, temperature in s.extra
        if (steps, temperature) != (s.steps, s.temperature)
    ]
    return control_section(world, held, cs, precision, progress, extra)


def _label(k: tuple[int, float]) -> str:
    return f"steps={k[0]}, temperature={k[1]:g}"


def _delta_entry(
    k: tuple[int, float],
    s: EvalSettings,
    delta: dict,
    frame_t: dict,
    frame_t_random: dict,
    resamples: int,
    n: int,
) -> dict[str, Any]:
    low, high = bootstrap_ci(delta[k], n=resamples, seed=s.seed)
    return {
        "value": float(delta[k].mean()),
        "ci_low": low,
        "ci_high": high,
        "frame_psnr": float(frame_t[k].mean()),
        "frame_psnr_random": float(frame_t_random[k].mean()),
        "std": float(delta[k].std(ddof=1)) if n > 1 else 0.0,
        "t": s.t,
        "steps": k[0],
        "temperature": k[1],
        "mode": s.mode,
        "clips": n,
        "label": _label(k),
    }


@torch.no_grad()
def _button_strips(
    world: Any,
    tokens: torch.Tensor,
    s: EvalSettings,
    window: int,
    device: torch.device,
    precision: Any,
) -> list[np.ndarray]:
    """For a few start frames: each latent action repeated for BUTTON_FRAMES frames.

    Returns one uint8 array (A, 1 + BUTTON_FRAMES, H, W, 3) per start frame.
    """
    a = int(world.num_actions)
    out = []
    for p in range(min(s.button_prompts, tokens.shape[0])):
        prompt = tokens[p : p + 1, :1].to(device).expand(a, 1, -1)  # (A, 1, N)
        codes = torch.arange(a, device=device)[:, None].expand(a, BUTTON_FRAMES)
        with precision:
            gen = _batch_generator(s.seed, p, 2, device)
            x = cached_rollout(
                world.dynamics, prompt, world.lam.action_vectors(codes), s.steps,
                s.temperature, s.mode, gen, window,
            )  # fmt: skip
        grid = int(math.isqrt(x.shape[-1]))
        out.append(_to_uint8(world.tokenizer.decode(x.view(*x.shape[:2], grid, grid))))
    return out
