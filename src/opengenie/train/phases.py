"""The two Genie training phases: (1) the tokenizer; (2) the LAM on pixels co-trained with the
dynamics model on the frozen tokenizer's tokens. Phase 2 writes a self-contained World."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from opengenie.config import GenieConfig
from opengenie.errors import UserError
from opengenie.models import VideoTokenizer, World
from opengenie.models.world import WORLD_FORMAT, read_checkpoint_config
from opengenie.train import checkpoint as ckpt
from opengenie.train import distributed
from opengenie.train.labels import movement_labels
from opengenie.train.loop import Phase, RunOptions, run_phase
from opengenie.train.validate import (
    dynamics_images,
    dynamics_validation,
    tokenizer_images,
    tokenizer_validation,
)

if TYPE_CHECKING:
    from opengenie.data.loader import ClipLoader, PrefetchLoader


@dataclass
class PhaseArgs:
    """What both phases take from the command line."""

    config: GenieConfig
    data: str
    out: str
    opts: RunOptions
    resume: bool = False
    val_data: str | None = None  # default: the val split of --data, when it has one
    init_from: str | None = None  # a World (or tokenizer run) to fine-tune from
    overrides: list[str] = field(default_factory=list)  # the --set items behind `config`


def available_memory_bytes() -> int | None:
    """Memory the system can give without swapping (Linux MemAvailable), else its total."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_batch_fits(batch_size: int, clip_frames: int, config: GenieConfig) -> None:
    """Refuse, before any work, a batch whose frames alone (uint8 as read, then float32 for
    the model) exceed the available memory: a lower bound of what a step needs (activations
    come on top), so it never refuses a batch that could run, and an absurd --set ...batch_size
    is one line instead of the process being killed for memory."""
    pixels = config.image_size**2 * config.channels
    need = batch_size * clip_frames * pixels * (1 + 4)
    have = available_memory_bytes()
    if have is not None and need > have:
        raise UserError(
            f"a batch of {batch_size} clips x {clip_frames} frames needs at least "
            f"{need / 2**30:.1f} GB for its frames alone, and {have / 2**30:.1f} GB are "
            "available: pass a smaller batch_size (--set ...optim.batch_size=N)"
        )


def make_loader(
    data_dir: str,
    config: GenieConfig,
    batch_size: int,
    seed: int,
    info: distributed.DistInfo,
    split: str = "train",
    clip_frames: int | None = None,
    prefetch: bool = True,
    frame_skip: int | None = None,
) -> ClipLoader | PrefetchLoader:
    """The phase's clip loader; `prefetch` reads each batch during the step before it.
    Clips take every `frame_skip`-th frame (default: the config's; the tokenizer passes 1)."""
    from opengenie.data import ClipLoader, PrefetchLoader, open_dataset

    dataset = open_dataset(data_dir)
    height, width = dataset.frame_size
    if (height, width) != (config.image_size, config.image_size):
        raise UserError(
            f"data frames are {height}x{width} but the config expects {config.image_size}: "
            f"re-create the data with --size {config.image_size} or --set image_size={height}"
        )
    check_batch_fits(batch_size, clip_frames or config.frames, config)
    loader = ClipLoader(
        dataset,
        split,
        clip_frames=clip_frames or config.frames,
        batch_size=batch_size,
        frame_skip=config.frame_skip if frame_skip is None else frame_skip,
        seed=seed,
        rank=info.rank,
        world_size=info.world_size,
    )
    return PrefetchLoader(loader) if prefetch else loader


def val_loader_factory(args: PhaseArgs, config: GenieConfig, batch_size: int):
    """A function giving the same validation batches every call, or None without val data."""
    from opengenie.data import open_dataset

    source = args.val_data or args.data
    dataset = open_dataset(source)
    if len(dataset.episode_ids("val")) == 0:
        if args.val_data:
            raise UserError(f"{args.val_data} has no val episodes: add some with --split val")
        return None
    single = distributed.DistInfo()

    def make():
        return make_loader(
            source, config, batch_size, seed=1234, info=single, split="val", prefetch=False
        )

    make()  # fail now, not at the first validation, if the clips do not fit
    return make


def _validation_hooks(make_val, scores, images, model, device: str) -> dict:
    """Phase.validate / Phase.images on fresh copies of the fixed validation clips."""
    if make_val is None:
        return {"validate": None, "images": None}
    return {
        "validate": lambda: scores(model, make_val(), device),
        "images": lambda: images(model, make_val(), device),
    }


def to_video(frames: torch.Tensor, device: str) -> torch.Tensor:
    return frames.to(device, non_blocking=True).float().div_(255)  # (B, T, H, W, C) in [0, 1]


def _resume_point(run: Path, resume: bool, fmt: str) -> Path | None:
    if not resume:
        return None
    found = ckpt.latest_checkpoint(run)
    if found is None:
        raise UserError(f"nothing to resume in {run}: run without --resume first")
    read_checkpoint_config(found, fmt)  # a one-line error if it is the other kind of run
    return found


def train_tokenizer(args: PhaseArgs) -> dict:
    info = distributed.setup(args.opts.device)
    device, run = info.device, Path(args.out)
    resume_from = _resume_point(run, args.resume, ckpt.TOKENIZER_FORMAT)
    config = (
        read_checkpoint_config(resume_from, ckpt.TOKENIZER_FORMAT) if resume_from else args.config
    )
    torch.manual_seed(args.opts.seed)  # identical initial weights on every rank
    model = VideoTokenizer(config)
    if resume_from is not None:
        ckpt.load_weights(resume_from, model)
    elif args.init_from:
        _init_tokenizer(model, Path(args.init_from))
    model = model.to(device).train()
    batch = config.tokenizer_optim.batch_size
    # Validation keeps full-length clips, as eval does.
    clip = config.tokenizer_clip_frames
    loader = make_loader(
        args.data, config, batch, args.opts.seed, info, clip_frames=clip, frame_skip=1
    )
    make_val = val_loader_factory(args, config, batch) if info.is_main else None

    def inputs(b: dict) -> tuple:
        return (to_video(b["frames"], device),)

    phase = Phase(
        name="tokenizer",
        fmt=ckpt.TOKENIZER_FORMAT,
        config=config,
        optim=config.tokenizer_optim,
        model=model,
        saved=model,
        inputs=inputs,
        **_validation_hooks(make_val, tokenizer_validation, tokenizer_images, model, device),
    )
    try:
        return run_phase(phase, loader, args.opts, run, info, resume_from)
    finally:
        loader.close()
        distributed.teardown()


def _init_tokenizer(model: VideoTokenizer, source: Path) -> None:
    """Fine-tune from a tokenizer run or from the tokenizer inside a World."""
    meta = read_any_config(source)
    prefix = "tokenizer" if meta == WORLD_FORMAT else ""
    ckpt.load_weights(source, model, prefix)


def read_any_config(path: Path) -> str:
    import json

    if not (path / "config.json").exists():
        raise UserError(f"{path} has no config.json: pass a World or tokenizer run")
    return json.loads((path / "config.json").read_text()).get("format", "")


LAM_TRAINING_CHOICES = (
    "decoder_context",
    "objective",
    "label_fraction",
    "label_weight",
    "label_codes",
)
DYNAMICS_TRAINING_CHOICES = (
    "mask_rate_min",
    "mask_rate_max",
    "clean_context",
    "context_noise",
    "context_noise_neighbours",
    "changed_weight",
)


def _check_overrides_kept(config: GenieConfig, wanted: GenieConfig, overrides: list[str]) -> None:
    """A one-line error for a --set that fine-tuning a World cannot honour: anything the World
    fixes and the new run does not carry over (sizes, sampling settings)."""
    have, want = config.to_dict(), wanted.to_dict()
    for item in overrides:
        key = item.partition("=")[0].strip()
        a, b = have, want
        for part in key.split("."):
            a, b = a[part], b[part]
        if a != b:
            raise UserError(
                f"--set {key} does not apply with --init-from: the World's value ({a}) is kept"
            )


class CoTraining(nn.Module):
    """Phase 2 as one module (so DDP sees one forward): the LAM learns from pixels, the
    dynamics model from the frozen tokenizer's tokens and the LAM's actions (gradient stopped)."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.lam, self.dynamics = world.lam, world.dynamics

    def forward(
        self, video: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict:
        lam = self.lam(video, labels)  # (B, T-1) actions from (B, T) frames
        dyn = self.dynamics.masked_loss(tokens, lam["actions"].detach())
        out = {
            "loss": lam["loss"] + dyn["loss"],
            "lam_mse": lam["mse"],
            "dynamics_ce": dyn["loss"],
            "masked_accuracy": dyn["accuracy"],
            "actions_used": lam["codes_used"],
        }
        if labels is not None:
            out["lam_label_ce"] = lam["label_loss"]
        return out


def train_dynamics(args: PhaseArgs, tokenizer_dir: str | None) -> dict:
    """Co-train LAM + dynamics on a trained tokenizer; writes a World to `args.out`."""
    info = distributed.setup(args.opts.device)
    device, run = info.device, Path(args.out)
    resume_from = _resume_point(run, args.resume, WORLD_FORMAT)
    torch.manual_seed(args.opts.seed)
    if resume_from is not None:
        world = World(read_checkpoint_config(resume_from, WORLD_FORMAT))
        ckpt.load_weights(resume_from, world)
    elif args.init_from:
        config = read_checkpoint_config(Path(args.init_from), WORLD_FORMAT)
        # The World gives the sizes; the new run gives its optimiser, its frame skip, its clip
        # length (time is RoPE, no table) and how the LAM learns (labels, objective, decoder
        # context): none changes a weight's shape.
        config.dynamics_optim = args.config.dynamics_optim
        config.frame_skip = args.config.frame_skip
        config.frames = args.config.frames
        for name in LAM_TRAINING_CHOICES:
            setattr(config.lam, name, getattr(args.config.lam, name))
        for name in DYNAMICS_TRAINING_CHOICES:
            setattr(config.dynamics, name, getattr(args.config.dynamics, name))
        config.validate()
        _check_overrides_kept(config, args.config, args.overrides)
        world = World(config)
        ckpt.load_weights(Path(args.init_from), world, optional=("lam.label_head.",))
    else:
        if tokenizer_dir is None:
            raise UserError("pass --tokenizer RUN (phase 1) or --init-from WORLD")
        config = args.config
        tok_path = Path(tokenizer_dir)
        # A World's tokenizer serves as well as a phase-1 run: e.g. the shipped world's.
        from_world = (tok_path / "config.json").is_file() and read_any_config(
            tok_path
        ) == WORLD_FORMAT
        tok_config = (
            read_checkpoint_config(tok_path, WORLD_FORMAT)
            if from_world
            else ckpt.read_tokenizer_config(tok_path)
        )
        if tok_config.tokenizer != config.tokenizer or tok_config.image_size != config.image_size:
            # The tokenizer's own sizes win: the dynamics model must match its vocabulary.
            config.tokenizer, config.image_size = tok_config.tokenizer, tok_config.image_size
            config.validate()
        world = World(config)
        ckpt.load_weights(tok_path, world.tokenizer, "tokenizer" if from_world else "")
    world = world.to(device)
    config = world.config
    world.train()
    world.tokenizer.eval().requires_grad_(False)  # frozen in phase 2
    codebook = world.tokenizer.quantizer.codebook().detach()  # (V, C)
    world.dynamics.set_noise_neighbours(codebook, config.dynamics.context_noise_neighbours)
    model = CoTraining(world)
    batch = config.dynamics_optim.batch_size
    loader = make_loader(args.data, config, batch, args.opts.seed, info)
    make_val = val_loader_factory(args, config, batch) if info.is_main else None

    fraction = config.lam.label_fraction

    def inputs(b: dict) -> tuple:
        video = to_video(b["frames"], device)
        with torch.no_grad():
            tokens = world.tokenizer.encode(video).flatten(2)  # (B, T, N)
        if fraction > 0:  # a fixed few labelled transitions (train/labels.py)
            return video, tokens, movement_labels(b, fraction, config.frame_skip).to(device)
        return video, tokens

    phase = Phase(
        name="dynamics",
        fmt=WORLD_FORMAT,
        config=config,
        optim=config.dynamics_optim,
        model=model,
        saved=world,
        inputs=inputs,
        **_validation_hooks(make_val, dynamics_validation, dynamics_images, world, device),
    )
    try:
        return run_phase(phase, loader, args.opts, run, info, resume_from)
    finally:
        loader.close()
        distributed.teardown()
