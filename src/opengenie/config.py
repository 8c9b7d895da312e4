"""Typed configs for the three Genie models, with named presets.

A `GenieConfig` holds everything needed to rebuild a World (model sizes, sampling defaults) and to
train it (optimiser settings per phase). It round-trips through JSON and accepts
`key=value` overrides with dotted keys, e.g. `tokenizer.dim=256` or `dynamics_optim.lr=1e-4`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from opengenie.errors import UserError


@dataclass
class QuantizerConfig:
    kind: Literal["vq", "fsq"] = "vq"
    codes: int = 1024  # VQ codebook size (FSQ: the product of `fsq_levels`)
    code_dim: int = 32  # VQ code width (FSQ: len(fsq_levels))
    beta: float = 0.25  # commitment weight
    dead_code_steps: int = 50  # reset VQ codes unused for this many training steps (0: never)
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)

    def validate(self, where: str) -> None:
        if self.kind not in ("vq", "fsq"):
            raise UserError(f"{where}.kind must be 'vq' or 'fsq', got {self.kind!r}")
        if self.kind == "vq" and (self.codes < 2 or self.code_dim < 1):
            raise UserError(f"{where}: VQ needs codes >= 2 and code_dim >= 1")
        if self.kind == "fsq" and (not self.fsq_levels or min(self.fsq_levels) < 2):
            raise UserError(f"{where}.fsq_levels must be a non-empty list of ints >= 2")
        if self.beta < 0 or self.dead_code_steps < 0:
            raise UserError(f"{where}: beta and dead_code_steps must be >= 0")

    @property
    def num_codes(self) -> int:
        if self.kind == "fsq":
            n = 1
            for level in self.fsq_levels:
                n *= level
            return n
        return self.codes


@dataclass
class TokenizerConfig:
    patch: int = 4
    dim: int = 512
    enc_depth: int = 8
    dec_depth: int = 8
    heads: int = 8
    ffn: int = 2048
    qk_norm: bool = True
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    # >0: temporal attention sees only the latest `temporal_window` frames (itself included),
    # and phase 1 trains on clips of that many frames, so a batch of the same size holds
    # frames/temporal_window times more distinct clips. 0: every earlier frame of the clip.
    temporal_window: int = 0


@dataclass
class LAMConfig:
    patch: int = 16
    dim: int = 512
    enc_depth: int = 8
    dec_depth: int = 8
    heads: int = 8
    ffn: int = 2048
    qk_norm: bool = True
    quantizer: QuantizerConfig = field(
        default_factory=lambda: QuantizerConfig(codes=8, code_dim=32, dead_code_steps=50)
    )
    # What the decoder sees besides the actions. "all": x_1..x_t (the paper's); "latest": only
    # x_t, so motion cannot be extrapolated from the history and the action must carry it.
    decoder_context: Literal["all", "latest"] = "all"
    # "frame": predict x_{t+1} (the paper's); "difference": predict x_{t+1} - x_t, the loss of
    # each transition divided by that transition's own change, so small scrolls count.
    objective: Literal["frame", "difference"] = "frame"
    # > 0: this share of the training transitions (a fixed subset, chosen by a hash of episode
    # and frame) keeps its true movement (CoinRun's six, data.coinrun.COINRUN_GROUP_NAMES),
    # which an inverse-dynamics head on the encoder learns to predict. 0: no labels (paper's).
    label_fraction: float = 0.0
    label_weight: float = 1.0  # weight of that cross-entropy beside the reconstruction loss
    # With labels: a labelled transition's action *is* code m of its movement m, for the LAM's
    # decoder and the dynamics model alike (its encoder output is pulled to that code), so the
    # world learns what each code does from the true movements; play's keys are then codes 0-5.
    # Needs a VQ quantizer with >= 6 codes.
    label_codes: bool = False


@dataclass
class DynamicsConfig:
    dim: int = 512
    depth: int = 12
    heads: int = 8
    ffn: int = 2048
    qk_norm: bool = True
    action_mode: Literal["add", "token"] = "add"  # paper: additive; "token": one prepended token
    mask_rate_min: float = 0.5  # MaskGIT training mask rate ~ U(min, max), drawn per sample
    mask_rate_max: float = 1.0
    # Share of frames after the first left whole in training, as clean context for the masked
    # ones (0: the paper's recipe, every frame masked at the sample's rate). Play and eval
    # predict from whole frames, which that recipe never shows the model.
    clean_context: float = 0.0
    # Up to this share of the visible tokens after frame 0 (drawn per sample from U(0, x))
    # replaced by random codes in training. In play the context is the model's own samples,
    # errors included; clean training inputs never show it a wrong token (0: off).
    context_noise: float = 0.0
    # Draw those codes among each true code's k nearest in the tokenizer's codebook instead of
    # from all of them (0): the world's own wrong tokens are often near the right code (v0.6.1
    # standing still: 40% within its 4 nearest of 1,024; docs/TRAINING.md, lineage 12).
    context_noise_neighbours: int = 0
    # Weight in the loss of a target token that differs from the same place in the frame
    # before, against 1 for one that does not. Most of a frame stays put; the keys' effect is
    # in what moves, which an unweighted loss counts no more than the still background (1: off).
    changed_weight: float = 1.0


# MaskGIT steps a frame takes in play (and eval's extra ΔtPSNR beside the paper's 25): picked
# from the quality-speed table in docs/PLAY.md (`opengenie bench play`, `opengenie eval`).
PLAY_STEPS = 2
# The most of each context frame that sampling may hide: a frame must keep some tokens to say
# anything (config, eval's and play's options share this bound).
CONTEXT_MASK_MAX = 0.95


@dataclass
class SamplingConfig:
    steps: int = 25  # MaskGIT steps per frame
    temperature: float = 1.0  # the CoinRun case study's (the main model used 2)
    mode: Literal["random", "argmax"] = "random"
    # Action guidance (not in the paper): logits(a) + w (logits(a) - logits(standing still)),
    # what a key changes against not pressing one, amplified; 0 is the paper's sampler.
    guidance: float = 0.0
    # Share of each earlier frame's tokens (all but the first) hidden from the dynamics model
    # as it predicts the next: training hides 50-100% of them (dynamics.mask_rate_*), so whole
    # earlier frames are outside what it learnt from. 0: the paper's sampler.
    context_mask: float = 0.0
    # Min-p sampling (not in the paper): each token's codes less likely than min_p times its
    # likeliest are dropped before sampling, the tail a still scene's drift is drawn from.
    # 0: the paper's sampler.
    min_p: float = 0.0


@dataclass
class OptimConfig:
    lr: float = 3e-4
    min_lr: float = 3e-4  # the floor of the cosine schedule (== lr: constant after warmup)
    warmup_steps: int = 10_000
    schedule: Literal["constant", "cosine"] = "constant"
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    batch_size: int = 48
    steps: int = 300_000
    bf16: bool = False  # bf16 autocast for this phase (measure first: it can be slower on CPU)


FRAME_SKIPS = (1, 2, 4, 8)


@dataclass
class GenieConfig:
    name: str = "custom"
    image_size: int = 64
    channels: int = 3
    frames: int = 16  # training clip length (also the temporal attention window in play)
    fps: int = 10
    # Game frames per world step: the LAM and the dynamics model see every k-th frame (the
    # tokenizer sees every frame), so one latent action covers k frames of a held key.
    frame_skip: int = 1
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    lam: LAMConfig = field(default_factory=LAMConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    tokenizer_optim: OptimConfig = field(default_factory=OptimConfig)
    dynamics_optim: OptimConfig = field(default_factory=OptimConfig)

    # -- derived sizes -------------------------------------------------------------------
    @property
    def token_grid(self) -> int:
        """Tokens per side of one frame (h = w)."""
        return self.image_size // self.tokenizer.patch

    @property
    def num_actions(self) -> int:
        return self.lam.quantizer.num_codes

    @property
    def tokenizer_clip_frames(self) -> int:
        """Frames per phase-1 training clip: the temporal window when there is one, since
        window-length clips already show every attention distance the tokenizer meets."""
        return min(self.tokenizer.temporal_window or self.frames, self.frames)

    # -- validation ----------------------------------------------------------------------
    def validate(self) -> GenieConfig:
        if self.image_size < 1 or self.channels < 1 or self.frames < 2 or self.fps < 1:
            raise UserError("image_size, channels, fps must be >= 1 and frames >= 2")
        for part in ("tokenizer", "lam"):
            patch = getattr(self, part).patch
            if patch < 1 or self.image_size % patch:
                raise UserError(
                    f"{part}.patch={patch} does not divide image_size={self.image_size}: "
                    "pick a patch size that divides the frame size"
                )
        for part in ("tokenizer", "lam", "dynamics"):
            sub = getattr(self, part)
            depths = (sub.depth,) if part == "dynamics" else (sub.enc_depth, sub.dec_depth)
            if min(sub.dim, sub.heads, *depths) < 1:
                raise UserError(f"{part}: dim, heads and depths must be >= 1")
            if sub.dim % sub.heads or (sub.dim // sub.heads) % 2:
                raise UserError(
                    f"{part}.dim={sub.dim} must split into {sub.heads} heads of even width"
                )
            if sub.ffn < 1:
                raise UserError(f"{part}.ffn must be >= 1")
        if self.frame_skip not in FRAME_SKIPS:
            raise UserError(
                f"frame_skip must be one of {', '.join(map(str, FRAME_SKIPS))} (so that the "
                f"held-key frames 8 and 16 are world steps), got {self.frame_skip}"
            )
        if self.tokenizer.temporal_window < 0:
            raise UserError("tokenizer.temporal_window must be >= 0 (0: all earlier frames)")
        self.tokenizer.quantizer.validate("tokenizer.quantizer")
        self.lam.quantizer.validate("lam.quantizer")
        if self.lam.decoder_context not in ("all", "latest"):
            raise UserError("lam.decoder_context must be 'all' or 'latest'")
        if self.lam.objective not in ("frame", "difference"):
            raise UserError("lam.objective must be 'frame' or 'difference'")
        if not 0.0 <= self.lam.label_fraction <= 1.0 or self.lam.label_weight < 0:
            raise UserError("need 0 <= lam.label_fraction <= 1 and lam.label_weight >= 0")
        if self.lam.label_codes and (
            self.lam.label_fraction <= 0
            or self.lam.quantizer.kind != "vq"
            or self.lam.quantizer.num_codes < 6
        ):
            raise UserError(
                "lam.label_codes needs lam.label_fraction > 0 and a vq quantizer with >= 6 codes"
            )
        if self.lam.quantizer.num_codes < 2:
            raise UserError("lam.quantizer needs at least 2 latent actions")
        d = self.dynamics
        if d.action_mode not in ("add", "token"):
            raise UserError(f"dynamics.action_mode must be 'add' or 'token', got {d.action_mode!r}")
        if not 0.0 <= d.mask_rate_min <= d.mask_rate_max <= 1.0:
            raise UserError("need 0 <= dynamics.mask_rate_min <= mask_rate_max <= 1")
        if not 0.0 <= d.clean_context < 1.0:
            raise UserError(f"dynamics.clean_context must be in [0, 1), got {d.clean_context}")
        if not 0.0 <= d.context_noise < 1.0:
            raise UserError(f"dynamics.context_noise must be in [0, 1), got {d.context_noise}")
        if not 0 <= d.context_noise_neighbours < self.tokenizer.quantizer.num_codes:
            raise UserError(
                "dynamics.context_noise_neighbours must be in [0, the tokenizer's codes), got "
                f"{d.context_noise_neighbours}"
            )
        if d.context_noise_neighbours and not d.context_noise:
            raise UserError("dynamics.context_noise_neighbours needs dynamics.context_noise > 0")
        if not d.changed_weight > 0:
            raise UserError(f"dynamics.changed_weight must be > 0, got {d.changed_weight}")
        s = self.sampling
        if s.steps < 1 or s.temperature <= 0 or s.mode not in ("random", "argmax"):
            raise UserError("sampling needs steps >= 1, temperature > 0, mode random|argmax")
        if not s.guidance >= 0:
            raise UserError(f"sampling.guidance must be >= 0, got {s.guidance}")
        if not 0.0 <= s.context_mask <= CONTEXT_MASK_MAX:
            raise UserError(
                f"sampling.context_mask must be in [0, {CONTEXT_MASK_MAX}], got {s.context_mask}"
            )
        if not 0.0 <= s.min_p <= 1.0:
            raise UserError(f"sampling.min_p must be in [0, 1], got {s.min_p}")
        for name in ("tokenizer_optim", "dynamics_optim"):
            o = getattr(self, name)
            if o.lr <= 0 or o.min_lr < 0 or o.batch_size < 1 or o.steps < 1 or o.warmup_steps < 0:
                raise UserError(f"{name}: lr > 0, min_lr >= 0, batch_size/steps >= 1 required")
            if o.schedule not in ("constant", "cosine"):
                raise UserError(f"{name}.schedule must be 'constant' or 'cosine'")
        return self

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenieConfig:
        return _build(cls, data, "").validate()

    @classmethod
    def from_json(cls, text: str) -> GenieConfig:
        return cls.from_dict(json.loads(text))

    def with_overrides(self, overrides: list[str] | None) -> GenieConfig:
        """Return a copy with `key=value` overrides applied (dotted keys), validated."""
        data = self.to_dict()
        for item in overrides or []:
            key, sep, raw = item.partition("=")
            if not sep:
                raise UserError(f"--set expects key=value, got {item!r}")
            node, parts = data, key.strip().split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise UserError(f"unknown config key {key!r}")
                node = node[part]
            if parts[-1] not in node or isinstance(node[parts[-1]], dict):
                raise UserError(f"unknown config key {key!r}")
            node[parts[-1]] = _parse_value(raw.strip(), node[parts[-1]], key)
        return GenieConfig.from_dict(data)


def _parse_value(raw: str, current: Any, key: str) -> Any:
    """Parse an override string to the type of the field's current value."""
    try:
        if isinstance(current, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(current, int):
            return int(float(raw)) if "e" in raw.lower() else int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, (tuple, list)):
            items = [s for s in raw.strip("()[]").split(",") if s.strip()]
            kind = type(current[0]) if current else float
            return [kind(s) for s in items]
    except (ValueError, OverflowError):  # OverflowError: an integer field given 1e309
        raise UserError(f"bad value for {key}: {raw!r}") from None
    return raw


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Construct a (nested) dataclass from a dict, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise UserError(f"config section {where or 'root'} must be an object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise UserError(f"unknown config keys in {where or 'root'}: {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        # Types first (e.g. "dim": "big"): the config's own checks assume the declared types.
        if dataclasses.is_dataclass(hint) and not isinstance(value, dict):
            raise UserError(f"{where}{name} must be an object, got {json.dumps(value)[:60]}")
        if not dataclasses.is_dataclass(hint) and not _fits(hint, value):
            raise UserError(
                f"{where}{name} must be {_describe(hint)}, got {json.dumps(value)[:60]}"
            )
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{where}{name}.")
        elif _is_tuple(hint):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _fits(hint: Any, value: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # NaN and infinities are never a setting (e.g. --set ...lr=nan)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return isinstance(value, str) and value in args
    if origin is tuple:
        if not isinstance(value, (list, tuple)):  # JSON gives lists, to_dict() tuples
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(args[0], v) for v in value)
        if len(value) != len(args):
            return False
        return all(_fits(a, v) for a, v in zip(args, value, strict=True))
    return True  # a kind of field this check does not know: left to the config's own checks


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return " or ".join(json.dumps(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    return names.get(hint, str(hint))


def _is_tuple(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is types.UnionType:
        return False
    return origin is tuple


# -- presets ---------------------------------------------------------------------------------


def _tiny() -> GenieConfig:
    """Trains on a 2-core CPU in about an hour per phase; plays >= 10 frames/s there.

    Departs from the paper's optimiser: a 10k-step warmup or lr 3e-5 cannot work in the few
    thousand steps a CPU hour allows, so it uses lr 3e-4 with short warmups.
    """
    return GenieConfig(
        name="tiny",
        # No QK-norm at this size: it made tokenizer steps ~1.5x slower on the 2-core CPU
        # (rms_norm forward/backward on every q and k), and 2-block models train without it.
        # Temporal attention over the latest 4 frames, so that phase 1 trains on 4-frame clips:
        # many distinct clips per step rather than a few long ones (+0.55 dB test PSNR after the
        # same 60 CPU minutes; docs/TRAINING.md).
        tokenizer=TokenizerConfig(
            patch=8,
            dim=128,
            enc_depth=2,
            dec_depth=2,
            heads=4,
            ffn=512,
            qk_norm=False,
            temporal_window=4,
        ),
        lam=LAMConfig(
            patch=16,
            dim=128,
            enc_depth=2,
            dec_depth=2,
            heads=4,
            ffn=512,
            qk_norm=False,
            quantizer=QuantizerConfig(codes=8, code_dim=32, dead_code_steps=50),
        ),
        dynamics=DynamicsConfig(dim=256, depth=4, heads=4, ffn=1024, qk_norm=False),
        # bf16 autocast for both phases: with bf16 matmul attention on the CPU (see
        # nn/st_transformer.py) the tokenizer steps ~2.4x faster than fp32 there; lr 1e-3
        # learned slower than 3e-4. 16 clips a step rather than 32: per frame seen it learns
        # faster, so an hour's ~25k half-size steps beat its ~14k full ones (28.01 vs 27.70 dB
        # test PSNR; docs/TRAINING.md).
        tokenizer_optim=OptimConfig(
            lr=3e-4,
            min_lr=3e-5,
            warmup_steps=200,
            schedule="cosine",
            batch_size=16,  # clips of temporal_window frames: 64 frames a step
            steps=22000,  # about 50 minutes here; the bar hour runs on at the floor lr
            bf16=True,
        ),
        dynamics_optim=OptimConfig(
            lr=3e-4,
            min_lr=3e-5,
            warmup_steps=200,
            schedule="cosine",
            batch_size=8,
            steps=8000,  # about 90 minutes of the 2-core CPU
            bf16=True,
        ),
    )


def _small() -> GenieConfig:
    """A step up for a single GPU or a long CPU run: patch 4, as in the paper."""
    return GenieConfig(
        name="small",
        tokenizer=TokenizerConfig(
            patch=4, dim=256, enc_depth=4, dec_depth=4, heads=8, ffn=1024, qk_norm=True
        ),
        lam=LAMConfig(
            patch=16,
            dim=256,
            enc_depth=4,
            dec_depth=4,
            heads=8,
            ffn=1024,
            quantizer=QuantizerConfig(codes=8, code_dim=32, dead_code_steps=50),
        ),
        dynamics=DynamicsConfig(dim=384, depth=8, heads=8, ffn=1536),
        tokenizer_optim=OptimConfig(
            lr=3e-4, min_lr=3e-4, warmup_steps=1000, batch_size=16, steps=50_000, bf16=True
        ),
        dynamics_optim=OptimConfig(
            lr=1e-4,
            min_lr=1e-5,
            warmup_steps=1000,
            schedule="cosine",
            batch_size=16,
            steps=50_000,
            bf16=True,
        ),
    )


def _coinrun() -> GenieConfig:
    """The paper's CoinRun case study (App. F): sizes and optimiser settings as published."""
    return GenieConfig(
        name="coinrun",
        tokenizer=TokenizerConfig(
            patch=4, dim=512, enc_depth=8, dec_depth=8, heads=8, ffn=2048, qk_norm=True
        ),
        lam=LAMConfig(
            patch=16,
            dim=512,
            enc_depth=8,
            dec_depth=8,
            heads=8,
            ffn=2048,
            quantizer=QuantizerConfig(codes=6, code_dim=32, dead_code_steps=50),
        ),
        dynamics=DynamicsConfig(dim=512, depth=12, heads=8, ffn=2048),
        sampling=SamplingConfig(steps=25, temperature=1.0),
        tokenizer_optim=OptimConfig(
            lr=3e-4, min_lr=3e-4, warmup_steps=10_000, batch_size=48, steps=300_000, bf16=True
        ),
        dynamics_optim=OptimConfig(
            lr=3e-5,
            min_lr=3e-6,
            warmup_steps=5_000,
            schedule="cosine",
            batch_size=36,
            steps=200_000,
            bf16=True,
        ),
    )


PRESETS = {"tiny": _tiny, "small": _small, "coinrun": _coinrun}


def preset(name: str, overrides: list[str] | None = None) -> GenieConfig:
    """A named preset (`tiny`, `small`, `coinrun`), validated, with optional overrides."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]().validate().with_overrides(overrides)
