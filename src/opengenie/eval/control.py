"""Control with held keys (DESIGN.md "Control (held keys)"): does the world move as the game does?

From the same start frames as the game's held-key videos (``held_keys.record_held_keys``) the
world holds the latent action paired with each movement for the same number of frames. Per
movement and start kind it reports the scene's scroll (``scroll.estimate_scroll``) in the world
and in the game, how often the world moves the same way where the game moves, the frames' PSNR
against the game's beside simply copying the start frame, and the LAM's own codes on the game's
videos. ``control_bars`` reads the issue's bars off the result.

The pairing of movements with latent actions is ``held_key_pairing``: eval's one-to-one lift
assignment (``metrics.key_assignment``) on the LAM's codes for the game's held-key videos,
where every movement is equally common and held long enough to be seen. It is what eval writes
to action_map.json, so play sends the codes measured here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from opengenie.eval.ceiling import roundtrip, roundtrip_held
from opengenie.eval.held_keys import MOVEMENTS, HeldKeyVideos
from opengenie.eval.metrics import capped_psnr, key_assignment, nmi
from opengenie.eval.rollout import batch_generator, cached_rollout, decode_tokens, to_uint8
from opengenie.eval.scroll import estimate_scroll

MOVING_PX = 4.0  # the game "moves" along an axis when it scrolls at least this far
TOLERANCE_PX, TOLERANCE_SHARE = 4.0, 0.4  # "the same way": within max(4 px, 40%) of the game


@dataclass
class ControlSettings:
    steps: int = 25
    temperature: float = 1.0
    mode: str = "random"
    seed: int = 0
    batch_size: int = 32
    guidance: float = 0.0  # action guidance against standing still (maskgit.guided)
    context_mask: float = 0.0  # share of earlier frames' tokens hidden (Dynamics.hide_context)
    min_p: float = 0.0  # min-p truncation of every token's codes (maskgit_fill)


def movement_code(keys: dict[str, int], movement: str) -> int | None:
    """The latent action play sends for ``movement``: a combo without its own code falls back to
    its parts, horizontal first ("left+jump" -> "left" -> "jump"), as play.js does."""
    names = [movement, *movement.split("+")] if "+" in movement else [movement]
    for name in names:
        if name in keys:
            return int(keys[name])
    return None


# -- the LAM on the game's videos ------------------------------------------------------------


@torch.no_grad()
def lam_codes(lam: Any, held: HeldKeyVideos, device: torch.device, batch: int = 64) -> np.ndarray:
    """The LAM's code for every transition of every held-key video: (L, S, M, frames)."""
    videos = held.videos.reshape(-1, *held.videos.shape[3:])  # (L*S*M, 1+F, H, W, 3)
    out = []
    for i in range(0, len(videos), batch):
        v = torch.as_tensor(videos[i : i + batch]).to(device).float().div_(255)
        out.append(lam.infer(v).cpu().numpy())  # (b, F)
    return np.concatenate(out).reshape(*held.videos.shape[:3], -1)


LAM_START = "mid"  # from level starts ← walks into the wall: only mid-level starts show every key


def held_code_table(
    codes: np.ndarray, valid: np.ndarray, num_codes: int, start: int = 1
) -> np.ndarray:
    """(codes, movements) counts of the LAM's codes on the valid held-key transitions from
    start kind ``start`` (default: mid-level, ``LAM_START``)."""
    table = np.zeros((num_codes, len(MOVEMENTS)), dtype=np.int64)
    for m in range(len(MOVEMENTS)):
        c = codes[:, start, m][valid[:, start, m]].reshape(-1)
        np.add.at(table[:, m], c, 1)
    return table


def held_key_pairing(table: np.ndarray) -> dict[str, int]:
    """Movement name -> latent action, from the held-key table (module docstring)."""
    used = [int(c) for c in np.flatnonzero(table.sum(1) > 0)]
    return key_assignment(table, used, list(MOVEMENTS))


LIFT_PAIRING = "one-to-one lift assignment on the LAM's codes for the game's held-key videos"
LABEL_PAIRING = "label codes: code m was trained as movement m (lam.label_codes)"


def key_pairing(world: Any, table: np.ndarray | None) -> tuple[dict[str, int], str]:
    """The keys play sends, and how they were found: a world trained with label codes knows
    what each code means (no table needed); any other world's codes are paired by the held-key
    table (no keys without one)."""
    if world.config.lam.label_codes:
        return {name: m for m, name in enumerate(MOVEMENTS)}, LABEL_PAIRING
    if table is None:
        return {}, ""
    return held_key_pairing(table), LIFT_PAIRING


def lam_section(table: np.ndarray) -> dict[str, Any]:
    """Dominant code and its share per movement, and NMI of codes against movements."""
    per = {}
    for m, name in enumerate(MOVEMENTS):
        column = table[:, m]
        total = int(column.sum())
        code = int(column.argmax())
        per[name] = {
            "dominant_code": code if total else None,
            "share": float(column[code] / total) if total else None,
            "transitions": total,
        }
    codes = np.repeat(np.arange(table.shape[0])[:, None], table.shape[1], 1)
    labels = np.repeat(np.arange(table.shape[1])[None], table.shape[0], 0)
    flat_c = np.repeat(codes.reshape(-1), table.reshape(-1))
    flat_l = np.repeat(labels.reshape(-1), table.reshape(-1))
    return {
        "per_movement": per,
        "nmi": nmi(flat_c, flat_l) if flat_c.size else None,
        "contingency": table.tolist(),
    }


# -- the world holding the same keys ----------------------------------------------------------


@torch.no_grad()
def world_held_rollouts(
    world: Any,
    starts: np.ndarray,
    codes: np.ndarray,
    frames: int,
    s: ControlSettings,
    precision: Any,
    progress: bool = True,
) -> np.ndarray:
    """From uint8 start frames (K, H, W, 3), hold latent action ``codes[k]`` for ``frames``
    frames: uint8 (K, 1 + frames, H, W, 3), frame 0 the tokenizer's view of the start."""
    device = world.device
    window = int(world.config.frames)
    still = world.guidance_reference() if s.guidance else None  # (1, A)
    out = []
    batches = range(0, len(starts), s.batch_size)
    bar = tqdm(batches, desc="world: held keys", unit="batch", disable=not progress)
    for b, i in enumerate(bar):
        video = torch.as_tensor(starts[i : i + s.batch_size]).to(device).float().div_(255)
        prompt = world.tokenizer.encode(video[:, None])  # (B, 1, h, w)
        held = torch.as_tensor(codes[i : i + s.batch_size], device=device)[:, None]
        vectors = world.lam.action_vectors(held.expand(-1, frames))  # (B, F, A)
        with precision:
            gen = batch_generator(s.seed, b, 3, device)
            tokens = cached_rollout(
                world.dynamics,
                prompt.flatten(2),
                vectors,
                s.steps,
                s.temperature,
                s.mode,
                gen,
                window,
                s.guidance,
                still,
                s.context_mask,
                s.min_p,
            )  # fmt: skip  (B, 1+F, N)
        out.append(to_uint8(decode_tokens(world, tokens)))
    return np.concatenate(out)


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ta = torch.as_tensor(a).float().div(255)
    tb = torch.as_tensor(b).float().div(255)
    return capped_psnr(ta, tb).numpy()


def _same_way(world: np.ndarray, game: np.ndarray) -> np.ndarray:
    """Same direction and within max(4 px, 40%) of the game's scroll (elementwise)."""
    tolerance = np.maximum(TOLERANCE_PX, TOLERANCE_SHARE * np.abs(game))
    return (np.sign(world) == np.sign(game)) & (np.abs(world - game) <= tolerance)


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def case_stats(game: np.ndarray, world: np.ndarray | None, stride: int = 1) -> dict[str, Any]:
    """Scroll and PSNR of the cases of one movement from one start kind.

    game, world: uint8 (K, 1 + F, H, W, 3), frame 0 the start, one frame per world step of
    ``stride`` game frames; world None when unpaired."""
    f = game.shape[1] - 1
    mid = f // 2
    start = np.broadcast_to(game[:, :1], game.shape)
    gdx, gdy = estimate_scroll(start[:, [mid, f]], game[:, [mid, f]])  # (K, 2): frames 8, 16
    out: dict[str, Any] = {
        "cases": len(game),
        "frames": [mid * stride, f * stride],  # in game frames
        "game_dx": [_mean(gdx[:, 0]), _mean(gdx[:, 1])],
        "game_dy": [_mean(gdy[:, 0]), _mean(gdy[:, 1])],
        "copy_psnr": [_mean(_psnr(game[:, 0], game[:, mid])), _mean(_psnr(game[:, 0], game[:, f]))],
    }
    if world is None:
        return {**out, "world": None}
    wdx, wdy = estimate_scroll(start[:, [mid, f]], world[:, [mid, f]])
    moving_x = np.abs(gdx[:, 1]) >= MOVING_PX  # horizontal: judged at the last frame
    moving_y = np.abs(gdy[:, 0]) >= MOVING_PX  # vertical (jumps): judged at the middle frame
    out["world"] = {
        "dx": [_mean(wdx[:, 0]), _mean(wdx[:, 1])],
        "dy": [_mean(wdy[:, 0]), _mean(wdy[:, 1])],
        "abs_error_dx": [_mean(np.abs(wdx - gdx)[:, 0]), _mean(np.abs(wdx - gdx)[:, 1])],
        "abs_error_dy": [_mean(np.abs(wdy - gdy)[:, 0]), _mean(np.abs(wdy - gdy)[:, 1])],
        "moving_x_cases": int(moving_x.sum()),
        "same_way_x": _mean(_same_way(wdx[:, 1], gdx[:, 1])[moving_x]),
        "moving_y_cases": int(moving_y.sum()),
        "same_sign_y": _mean((np.sign(wdy[:, 0]) == np.sign(gdy[:, 0]))[moving_y]),
        "psnr": [_mean(_psnr(world[:, mid], game[:, mid])), _mean(_psnr(world[:, f], game[:, f]))],
    }
    return out


def control_section(
    world: Any,
    held: HeldKeyVideos,
    s: ControlSettings,
    precision: Any,
    progress: bool = True,
    extra: list[ControlSettings] | tuple[ControlSettings, ...] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the world on every valid held-key case: (metrics["control"], pictures). Each of
    `extra` runs the same cases again at its sampling settings (the LAM's codes and the key
    pairing do not depend on them) and adds its bars to metrics["control"]["extra"]."""
    device = world.device
    num_codes = int(world.num_actions)
    stride = int(world.config.frame_skip)  # one world step = `stride` game frames
    held = held.every(stride)
    codes = lam_codes(world.lam, held, device)  # (L, S, M, F)
    table = held_code_table(codes, held.valid, num_codes, held.start_kinds.index(LAM_START))
    keys, pairing = key_pairing(world, table)
    frames = held.videos.shape[3] - 1
    # Every valid (level, start, movement) whose movement has a code: one world rollout each.
    cases = [
        (lv, st, m)
        for lv in range(len(held.levels))
        for st in range(len(held.start_kinds))
        for m, name in enumerate(MOVEMENTS)
        if held.valid[lv, st, m] and movement_code(keys, name) is not None
    ]
    sent = np.array([movement_code(keys, MOVEMENTS[m]) for _, _, m in cases], dtype=np.int64)
    starts = np.stack([held.videos[lv, st, m, 0] for lv, st, m in cases]) if cases else None

    def rollouts(settings: ControlSettings) -> np.ndarray:
        if not cases:
            return np.zeros((0, frames + 1, *held.videos.shape[-3:]), np.uint8)
        return world_held_rollouts(world, starts, sent, frames, settings, precision, progress)

    # What a dynamics model that predicted the game's tokens exactly would score (ceiling.py).
    ceiling = _tokenizer_stats(
        held, roundtrip_held(held, lambda v: roundtrip(world, v, precision)), stride
    )  # sampling settings do not change it: computed once for `s` and every `extra`
    movements, pictures = _movement_stats(held, keys, cases, rollouts(s), stride, ceiling)
    metrics = {
        "levels": [int(v) for v in held.levels],
        "frames": frames * stride,  # game frames held
        "frame_skip": stride,
        "start_kinds": list(held.start_kinds),
        "keys": keys,
        "pairing": pairing,
        "movements": movements,
        "lam": {**lam_section(table), "start": LAM_START},
        "settings": {
            "steps": s.steps,
            "temperature": s.temperature,
            "mode": s.mode,
            "guidance": s.guidance,
            "context_mask": s.context_mask,
            "min_p": s.min_p,
            "seed": s.seed,
            "moving_px": MOVING_PX,
            "tolerance": f"max({TOLERANCE_PX:g} px, {TOLERANCE_SHARE:.0%} of the game's scroll)",
        },
    }
    metrics["bars"] = control_bars(metrics)
    metrics["extra"] = []
    for e in extra:
        other, _ = _movement_stats(held, keys, cases, rollouts(e), stride, ceiling)
        bars = control_bars({**metrics, "movements": other})
        metrics["extra"].append(
            {
                "steps": e.steps,
                "temperature": e.temperature,
                "guidance": e.guidance,
                "context_mask": e.context_mask,
                "min_p": e.min_p,
                "bars": bars,
            }
        )
    return metrics, pictures


def _movement_stats(
    held: HeldKeyVideos,
    keys: dict[str, int],
    cases: list[tuple[int, int, int]],
    rolled: np.ndarray,
    stride: int,
    ceiling: dict[tuple[str, str], dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per movement and start kind, the game's cases beside the world's rollouts `rolled`
    (one per case, in `cases` order) and the tokenizer's figures `ceiling`
    (`_tokenizer_stats`): (movements, pictures)."""
    index = {case: i for i, case in enumerate(cases)}
    movements: dict[str, Any] = {}
    pictures: dict[str, Any] = {}
    for m, name in enumerate(MOVEMENTS):
        code = movement_code(keys, name)
        movements[name] = {"code": code}
        for st, kind in enumerate(held.start_kinds):
            rows = [lv for lv in range(len(held.levels)) if held.valid[lv, st, m]]
            game = held.videos[rows, st, m]
            world_v = None if code is None else rolled[[index[(lv, st, m)] for lv in rows]]
            movements[name][kind] = case_stats(game, world_v, stride) if rows else {"cases": 0}
            if rows:  # the first level's case; no world row where the key has no code
                movements[name][kind].update(ceiling[(name, kind)])
                shown = None if world_v is None else world_v[0]
                pictures[f"{name}/{kind}"] = (game[0], shown, int(held.levels[rows[0]]))
    return movements, pictures


def _tokenizer_stats(
    held: HeldKeyVideos, recon: np.ndarray, stride: int
) -> dict[tuple[str, str], dict[str, Any]]:
    """The tokenizer's reconstructions of the game's videos, recon (L, S, M, 1+F, H, W, 3),
    scored as a world per (movement, start kind) with cases: its PSNR and same-way share."""
    out = {}
    for m, name in enumerate(MOVEMENTS):
        for st, kind in enumerate(held.start_kinds):
            rows = [lv for lv in range(len(held.levels)) if held.valid[lv, st, m]]
            if rows:
                perfect = case_stats(held.videos[rows, st, m], recon[rows, st, m], stride)["world"]
                out[(name, kind)] = {
                    "tokenizer_psnr": perfect["psnr"],
                    "tokenizer_same_way_x": perfect["same_way_x"],
                }
    return out


def control_bars(c: dict[str, Any]) -> dict[str, Any]:
    """The control issue's bars read off a control section (None where not measurable)."""

    def get(movement: str, kind: str) -> dict[str, Any]:
        return c["movements"][movement].get(kind) or {}

    def gain(case: dict[str, Any], frame: int) -> float | None:
        w = case.get("world")
        if not w or w["psnr"][frame] is None or case["copy_psnr"][frame] is None:
            return None
        return w["psnr"][frame] - case["copy_psnr"][frame]

    def world(case: dict[str, Any], key: str, frame: int | None = None) -> float | None:
        w = case.get("world")
        if not w:
            return None
        return w[key] if frame is None else w[key][frame]

    right, left = get("right", "first"), get("left", "mid")
    jump = [get("jump", k) for k in c["start_kinds"]]
    still = [get("none", k) for k in c["start_kinds"]]
    lam = c["lam"]["per_movement"]
    dominant = [lam[n]["dominant_code"] for n in ("left", "right", "none")]
    shares = [lam[n]["share"] for n in ("left", "right", "none")]

    def mean(values: list[float | None]) -> float | None:
        v = [x for x in values if x is not None and not math.isnan(x)]
        return float(np.mean(v)) if v else None

    return {
        "right_first_same_way": world(right, "same_way_x"),
        "right_first_psnr16_gain": gain(right, 1),
        "left_mid_same_way": world(left, "same_way_x"),
        "left_mid_psnr16_gain": gain(left, 1),
        "jump_dy8_same_sign": mean([world(j, "same_sign_y") for j in jump]),
        "jump_psnr8_gain": mean([gain(j, 0) for j in jump]),
        "jump_psnr16": mean([world(j, "psnr", 1) for j in jump]),
        "still_psnr16": mean([world(x, "psnr", 1) for x in still]),
        # The same frames as the tokenizer reconstructs them: a perfect dynamics model's score.
        "jump_psnr16_ceiling": mean([(j.get("tokenizer_psnr") or [None, None])[1] for j in jump]),
        "still_psnr16_ceiling": mean([(x.get("tokenizer_psnr") or [None, None])[1] for x in still]),
        "right_first_same_way_ceiling": right.get("tokenizer_same_way_x"),
        "left_mid_same_way_ceiling": left.get("tokenizer_same_way_x"),
        "lam_left_right_still_distinct": len(set(dominant)) == 3 and None not in dominant,
        "lam_left_right_still_min_share": min(s for s in shares if s is not None)
        if all(s is not None for s in shares)
        else None,
        "lam_held_nmi": c["lam"]["nmi"],
    }
