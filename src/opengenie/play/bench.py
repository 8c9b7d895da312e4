"""`opengenie bench play`: frames/s of play (sample + decode) and the key/value cache's speed-up.

Every figure comes from one run, with the settings measured in alternation (round robin) so
that load from other jobs on a shared machine hits them alike. Frames are timed once the cache
holds a full window (the steady state of a long game), on a random-weight World of the preset
unless --world is given: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from opengenie.atomic import atomic_write_json
from opengenie.config import SamplingConfig
from opengenie.errors import UserError
from opengenie.options import GUIDANCE, STEPS, at_least
from opengenie.precision import resolve_precision

PAPER_STEPS = 25
SWEEP_STEPS = (1, 2, 4, 8, 25)


def add_parser(kinds: argparse._SubParsersAction) -> None:
    from opengenie.play.cli import DEFAULT_STEPS

    p = kinds.add_parser("play", help="play frames/s (sample + decode) and the cache speed-up")
    p.add_argument("--world", help="World directory (default: random weights of --preset)")
    p.add_argument("--preset", default="tiny", help="preset for the random-weight World")
    p.add_argument(
        "--steps", type=STEPS.arg("--steps"), default=DEFAULT_STEPS, help="play's default steps"
    )
    p.add_argument(
        "--guidance",
        type=GUIDANCE.arg("--guidance"),
        help="play's action guidance (default: the world's); above 0 the unguided default is "
        "timed too, for the ratio",
    )
    p.add_argument(
        "--frames",
        type=at_least(1).arg("--frames"),
        default=10,
        help="timed frames per setting per round",
    )
    p.add_argument(
        "--rounds", type=at_least(1).arg("--rounds"), default=3, help="round-robin rounds"
    )
    p.add_argument(
        "--threads",
        type=at_least(1).arg("--threads"),
        default=1,
        help="torch threads (play's default: 1)",
    )
    p.add_argument(
        "--eval-metrics",
        help="metrics.json of `opengenie eval` on this world, to put each setting's ΔtPSNR "
        "beside its speed (default: WORLD/metrics.json when there is one)",
    )
    p.add_argument(
        "--sweep",
        type=STEPS.list_arg("--sweep"),
        default=list(SWEEP_STEPS),
        help="MaskGIT steps timed at play's precision for the quality-speed table, each beside "
        "eval's ΔtPSNR, frame-t PSNR and control bars at those steps "
        "(default 1,2,4,8,25; '' for none)",
    )
    p.add_argument("--out", default="bench/results/play.json", help="JSON to write")
    p.set_defaults(func=run_play_bench)


def _time_frames(step: Callable[[], object], frames: int) -> list[float]:
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float]) -> dict:
    median = statistics.median(times)
    return {
        "frames_per_s": 1.0 / median,  # from the median frame time
        "frames_per_s_mean": len(times) / sum(times),
        "ms_per_frame_median": median * 1000,
        "frames_timed": len(times),
    }


class _Recompute:
    """One frame the uncached way: MaskGIT over the whole window (the latest 15 frames plus the
    new one), then decoding the window without a cache and keeping its last frame."""

    def __init__(self, world, steps: int, seed: int = 0) -> None:
        self.world, self.steps = world, steps
        cfg = world.config
        g = torch.Generator().manual_seed(seed)
        n, grid = cfg.token_grid**2, cfg.token_grid
        self.context = torch.randint(
            0, world.tokenizer.num_codes, (1, cfg.frames - 1, n), generator=g
        )
        ids = torch.randint(0, world.num_actions, (1, cfg.frames - 1), generator=g)
        self.vectors = world.lam.action_vectors(ids)
        self.generator = g
        self.grid = grid

    @torch.no_grad()
    def __call__(self) -> np.ndarray:
        from opengenie.models.maskgit import rollout

        w, s = self.world, self.world.sampling
        still = w.guidance_reference() if s.guidance else None
        tokens = rollout(
            w.dynamics,
            self.context,
            self.vectors,
            self.steps,
            s.temperature,
            s.mode,
            self.generator,
            window=w.config.frames,
            guidance=s.guidance,
            still=still,
            context_mask=s.context_mask,
            min_p=s.min_p,
        )
        window = tokens[:, -w.config.frames :].reshape(1, -1, self.grid, self.grid)
        return w.tokenizer.decode(window)[0, -1].numpy()


# The sampling settings eval records beside each figure; play's must match all of them.
JOINED_SAMPLING_FIELDS = ("steps", "temperature", "guidance", "context_mask", "min_p")
# What an entry written before eval recorded a field was measured at: the paper's sampler.
OLDER_ENTRY_DEFAULTS = {"guidance": 0.0, "context_mask": 0.0, "min_p": 0.0}


def _same_sampling(entry: dict, sampling: SamplingConfig) -> bool:
    """Whether an eval entry was measured at these settings."""
    return all(
        entry.get(field, OLDER_ENTRY_DEFAULTS.get(field)) == getattr(sampling, field)
        for field in JOINED_SAMPLING_FIELDS
    )


def eval_delta_psnr(metrics: dict, sampling: SamplingConfig) -> dict | None:
    """The ΔtPSNR entry `opengenie eval` measured at these sampling settings, if it did."""
    dynamics = metrics.get("dynamics") or {}
    entries = [dynamics.get("delta_t_psnr") or {}, *(dynamics.get("delta_t_psnr_extra") or [])]
    for entry in entries:
        if _same_sampling(entry, sampling):
            keys = ("value", "ci_low", "ci_high", "frame_psnr", "t", "clips", "steps")
            return {k: entry[k] for k in keys if k in entry}
    return None


def eval_control_bars(metrics: dict, sampling: SamplingConfig) -> dict | None:
    """The control bars `opengenie eval` measured at these sampling settings, if it did."""
    control = metrics.get("control") or {}
    if _same_sampling(control.get("settings") or {}, sampling):
        return control.get("bars")
    for entry in control.get("extra") or []:
        if _same_sampling(entry, sampling):
            return entry.get("bars")
    return None


def quality_speed_table(
    metrics: dict, fps: dict[int, dict], sampling: SamplingConfig
) -> list[dict]:
    """One row per MaskGIT steps: frames/s beside eval's figures at the same steps (and
    otherwise `sampling`'s settings)."""
    rows = []
    for steps, speed in sorted(fps.items()):
        at_steps = dataclasses.replace(sampling, steps=steps)
        delta = eval_delta_psnr(metrics, at_steps)
        rows.append(
            {
                "steps": steps,
                "frames_per_s": speed["frames_per_s"],
                "ms_per_frame_median": speed["ms_per_frame_median"],
                "delta_t_psnr": delta,
                "frame_psnr": None if delta is None else delta.get("frame_psnr"),
                "control_bars": eval_control_bars(metrics, at_steps),
            }
        )
    return rows


def _eval_metrics(args: argparse.Namespace) -> tuple[dict, str | None]:
    path = args.eval_metrics
    if path is None and args.world and (Path(args.world) / "metrics.json").is_file():
        path = Path(args.world) / "metrics.json"
    if path is None:
        return {}, None
    try:
        return json.loads(Path(path).read_text()), str(path)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read eval metrics {path}: {e}") from None


Setting = tuple[str, int, float]  # (dynamics precision, MaskGIT steps, guidance)


def _load_world(args: argparse.Namespace) -> tuple[Any, str]:
    """The fp32 World to time (--world, or random weights of --preset) and how to name it."""
    from opengenie.config import preset
    from opengenie.models import World

    if args.world:
        return World.load(args.world), str(args.world)
    return World(preset(args.preset)), f"random weights, preset {args.preset}"


def _settings(
    args: argparse.Namespace, play_dtype: str, guidance: float
) -> tuple[dict[str, Setting], dict[int, str]]:
    """The timed settings by name, and which of them each --sweep point is (a sweep point
    may be one of the named settings)."""
    settings: dict[str, Setting] = {
        "default": (play_dtype, args.steps, guidance),
        "paper_steps": (play_dtype, PAPER_STEPS, guidance),
        "default_fp32": ("float32", args.steps, guidance),
        "paper_steps_fp32": ("float32", PAPER_STEPS, guidance),
    }
    if guidance:  # what guidance's second pass costs, in the same run
        settings["default_unguided"] = (play_dtype, args.steps, 0.0)
    sweep_names = {}
    for steps in args.sweep:
        named = [k for k, v in settings.items() if v == (play_dtype, steps, guidance)]
        sweep_names[steps] = named[0] if named else f"steps_{steps}"
        settings.setdefault(sweep_names[steps], (play_dtype, steps, guidance))
    return settings, sweep_names


def _warm_sessions(
    worlds: dict[str, Any], settings: dict[str, Setting], prompt: np.ndarray, actions: list[int]
) -> dict[str, Any]:
    """One play session per setting, stepped until its cache holds a full window."""
    sessions = {}
    for name, (precision, steps, weight) in settings.items():
        session = worlds[precision].new_session()
        session.sampling.steps = 2  # cheap warm-up: filling the cache does not depend on steps
        session.sampling.guidance = 0.0
        session.reset(prompt, seed=0)
        for action in actions[: session.world.config.frames]:
            session.step(action)
        session.sampling.steps, session.sampling.guidance = steps, weight
        sessions[name] = session
    return sessions


def _round_robin(
    sessions: dict[str, Any],
    recompute: dict[str, _Recompute],
    actions: list[int],
    first_action: int,
    args: argparse.Namespace,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Frame times of every session and recompute path, in alternation, --rounds times."""
    times: dict[str, list[float]] = {name: [] for name in sessions}
    recompute_times: dict[str, list[float]] = {name: [] for name in recompute}
    recompute_frames = max(1, args.frames // 3)  # ~10x slower per frame: fewer of them
    counter = iter(range(first_action, len(actions)))
    for r in range(args.rounds):
        for name, session in sessions.items():
            times[name] += _time_frames(
                lambda s=session: s.step(actions[next(counter)]), args.frames
            )
        for name, fn in recompute.items():
            recompute_times[name] += _time_frames(fn, recompute_frames)
        print(
            f"  round {r + 1}: "
            + ", ".join(f"{k} {1 / statistics.median(v):.1f} fps" for k, v in times.items()),
            flush=True,
        )
    return times, recompute_times


def _speedups(
    settings: dict[str, Setting], times: dict[str, list[float]], recompute: dict[str, list[float]]
) -> dict[str, dict]:
    """The cache's speed-up: each recomputed setting against its cached twin."""
    out = {}
    for name, values in recompute.items():
        cached, uncached = _summary(times[name]), _summary(values)
        out[name] = {
            "steps": settings[name][1],
            "dynamics_dtype": settings[name][0],
            "cached_frames_per_s": cached["frames_per_s"],
            "recomputed_frames_per_s": uncached["frames_per_s"],
            "recomputed_frames_timed": uncached["frames_timed"],
            "speedup": uncached["ms_per_frame_median"] / cached["ms_per_frame_median"],
        }
    return out


def _summary_figures(report: dict, sweep_fps: dict[int, dict], guidance: float) -> dict:
    """The headline figures of a report (its settings and cache speed-up filled in)."""
    timed = report["settings"]
    return {
        "default_frames_per_s": timed["default"]["frames_per_s"],
        "paper_steps_frames_per_s": timed["paper_steps"]["frames_per_s"],
        "cache_speedup_at_default": report["cache_speedup"]["default"]["speedup"],
        # Frames/s without guidance over with it (None when the default is unguided).
        "unguided_over_guided": (
            timed["default_unguided"]["frames_per_s"] / timed["default"]["frames_per_s"]
            if guidance
            else None
        ),
        # Issue #16's bars: >= 30 frames/s at the default, >= 2.5x the 8-step path (same run).
        "meets_30_fps_target": timed["default"]["frames_per_s"] >= 30.0,
        "default_over_8_steps": (
            timed["default"]["frames_per_s"] / sweep_fps[8]["frames_per_s"]
            if 8 in sweep_fps
            else None
        ),
    }


def run_play_bench(args: argparse.Namespace) -> int:
    torch.set_flush_denormal(True)  # as the play server does (denormals were several x slower)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    metrics, metrics_source = _eval_metrics(args)
    load_before = os.getloadavg()
    fp32, source = _load_world(args)
    guidance = fp32.sampling.guidance if args.guidance is None else args.guidance
    fp32.sampling.guidance = guidance  # every session and the recompute path sample so
    if guidance:
        fp32.guidance_reference()  # a one-line error for a world with no still action
    # Play's sampling: the world's settings (context mask, min-p...) at these steps and guidance.
    played = dataclasses.replace(fp32.sampling, steps=args.steps, guidance=guidance)
    # Play's default precision as play resolves it here (bf16 only where it is faster).
    play_dtype = "bfloat16" if resolve_precision("auto") == "bf16" else "float32"
    worlds = {"float32": fp32}
    if play_dtype == "bfloat16":
        worlds["bfloat16"] = copy.deepcopy(fp32).set_dynamics_dtype(torch.bfloat16)
    size = fp32.config.image_size
    prompt = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    actions = np.random.default_rng(1).integers(0, fp32.num_actions, 10_000).tolist()

    settings, sweep_names = _settings(args, play_dtype, guidance)
    sessions = _warm_sessions(worlds, settings, prompt, actions)
    print(f"bench play: {source}, {args.rounds} rounds x {args.frames} frames", flush=True)
    # Recomputing over the window, at the same settings as the cached runs it is compared with.
    recompute = {
        "default": _Recompute(worlds[play_dtype], args.steps),
        "paper_steps": _Recompute(worlds[play_dtype], PAPER_STEPS),
    }
    times, recompute_times = _round_robin(sessions, recompute, actions, fp32.config.frames, args)

    cfg = fp32.config
    report: dict = {
        "bench": "play",
        "world": source,
        "preset": cfg.name,
        "image_size": cfg.image_size,
        "tokens_per_frame": cfg.token_grid**2,
        "window": cfg.frames,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "what": "end-to-end frames/s of PlaySession.step (MaskGIT sampling + cache commit + "
        f"decode) with a full cache; temperature {played.temperature}, {played.mode} sampling",
        "play_defaults": {
            **dataclasses.asdict(played),
            "dynamics_dtype": play_dtype,
            "threads": args.threads,
        },
        # Quality is measured by `opengenie eval` on a trained world (none for random weights).
        "eval_metrics": metrics_source,
        "delta_psnr_at_play_defaults": eval_delta_psnr(metrics, played),
        "delta_psnr_at_paper_steps": eval_delta_psnr(
            metrics, dataclasses.replace(played, steps=PAPER_STEPS)
        ),
        "settings": {
            name: {"steps": steps, "guidance": weight, "dynamics_dtype": precision}
            | _summary(times[name])
            for name, (precision, steps, weight) in settings.items()
        },
        "cache_speedup": _speedups(settings, times, recompute_times),
    }
    sweep_fps = {steps: report["settings"][name] for steps, name in sweep_names.items()}
    report["quality_speed"] = quality_speed_table(metrics, sweep_fps, played)
    report["summary"] = _summary_figures(report, sweep_fps, guidance)
    out = Path(args.out)
    atomic_write_json(out, report)
    for row in report["quality_speed"]:
        print(_table_line(row), flush=True)
    print(json.dumps(report["summary"]), flush=True)
    print(f"wrote {out}")
    return 0


def _table_line(row: dict) -> str:
    """One line of the quality-speed table for the terminal."""
    d, b = row["delta_t_psnr"], row["control_bars"] or {}

    def num(x, fmt: str = ".2f") -> str:
        return "-" if x is None else format(x, fmt)

    delta = (
        "ΔtPSNR -"
        if d is None
        else (
            f"ΔtPSNR {d['value']:.2f} [{d['ci_low']:.2f}, {d['ci_high']:.2f}], "
            f"frame PSNR {num(d.get('frame_psnr'))}"
        )
    )
    return (
        f"  steps {row['steps']:>3}: {row['frames_per_s']:5.1f} frames/s, {delta}; "
        f"→ {num(b.get('right_first_same_way'))} ← {num(b.get('left_mid_same_way'))} "
        f"↑ {num(b.get('jump_dy8_same_sign'))} still {num(b.get('still_psnr16'), '.1f')} dB"
    )
