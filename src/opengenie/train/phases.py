"""The two Genie training phases: (1) the tokenizer; (2) the LAM on pixels co-trained with the
dynamics model on the frozen tokenizer's tokens. Phase 2 writes a self-contained World."""

from __future__ import annotations

from pathlib import Path

import torch

from opengenie.config import GenieConfig
from opengenie.errors import UserError
from opengenie.models import VideoTokenizer, World
from opengenie.models.world import WORLD_FORMAT
from opengenie.train.checkpoint import (
    TOKENIZER_FORMAT,
    load_trainer_state,
    load_weights,
    read_tokenizer_config,
)
from opengenie.train.loop import RunOptions, run_loop


def make_loader(data_dir: str, config: GenieConfig, batch_size: int, seed: int):
    from opengenie.data import ClipLoader, open_dataset

    dataset = open_dataset(data_dir)
    height, width = dataset.frame_size
    if (height, width) != (config.image_size, config.image_size):
        raise UserError(
            f"data frames are {height}x{width} but the config expects {config.image_size}: "
            f"re-create the data with --size {config.image_size} or --set image_size={height}"
        )
    return ClipLoader(dataset, "train", clip_frames=config.frames, batch_size=batch_size, seed=seed)


def _to_float(frames: torch.Tensor, device: str) -> torch.Tensor:
    return frames.to(device, non_blocking=True).float().div_(255)  # (B, T, H, W, C) in [0, 1]


def train_tokenizer(
    config: GenieConfig, data_dir: str, out_dir: str, opts: RunOptions, resume: bool = False
) -> dict:
    out = Path(out_dir)
    torch.manual_seed(opts.seed)
    model = VideoTokenizer(config).to(opts.device).train()
    state = None
    if resume:
        config = read_tokenizer_config(out)
        model = VideoTokenizer(config).to(opts.device).train()
        load_weights(out, model)
        state = load_trainer_state(out)
    loader = make_loader(data_dir, config, config.tokenizer_optim.batch_size, opts.seed)

    def step(batch: dict) -> dict:
        result = model(_to_float(batch["frames"], opts.device))
        mse = result["mse"].detach().float()
        psnr = 10 * torch.log10(1 / mse.clamp(min=1e-10))
        return {"loss": result["loss"], "psnr": psnr, "codes_used": result["codes_used"]}

    return run_loop(
        "tokenizer",
        step,
        list(model.parameters()),
        model,
        loader,
        config.tokenizer_optim,
        config,
        out,
        TOKENIZER_FORMAT,
        opts,
        state,
    )


def train_dynamics(
    config: GenieConfig,
    data_dir: str,
    tokenizer_dir: str,
    out_dir: str,
    opts: RunOptions,
    resume: bool = False,
) -> dict:
    """Co-train LAM + dynamics on top of a trained tokenizer and write a World to `out_dir`."""
    out = Path(out_dir)
    torch.manual_seed(opts.seed)
    state = None
    if resume:
        world = World.load(out, device=opts.device)
        config = world.config
        state = load_trainer_state(out)
    else:
        tok_config = read_tokenizer_config(tokenizer_dir)
        if tok_config.tokenizer != config.tokenizer or tok_config.image_size != config.image_size:
            # The tokenizer's own sizes win: the dynamics model must match its vocabulary.
            config.tokenizer, config.image_size = tok_config.tokenizer, tok_config.image_size
            config.validate()
        world = World(config).to(opts.device)
        load_weights(Path(tokenizer_dir), world.tokenizer)
    world.train()
    world.tokenizer.eval().requires_grad_(False)  # frozen in phase 2
    trainable = [*world.lam.parameters(), *world.dynamics.parameters()]
    loader = make_loader(data_dir, config, config.dynamics_optim.batch_size, opts.seed)

    def step(batch: dict) -> dict:
        video = _to_float(batch["frames"], opts.device)
        tokens = world.tokenizer.encode(video).flatten(2)  # (B, T, N)
        lam = world.lam(video)
        dyn = world.dynamics.masked_loss(tokens, lam["actions"].detach())
        return {
            "loss": lam["loss"] + dyn["loss"],
            "lam_mse": lam["mse"],
            "dyn_ce": dyn["loss"],
            "accuracy": dyn["accuracy"],
            "actions_used": lam["codes_used"],
        }

    summary = run_loop(
        "dynamics",
        step,
        trainable,
        world,
        loader,
        config.dynamics_optim,
        config,
        out,
        WORLD_FORMAT,
        opts,
        state,
    )
    return summary
