"""Shared fixtures: small configs and synthetic clips that look a little like a platformer."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

from opengenie.config import preset

# As in training: denormal floats made CPU steps several times slower on this machine.
torch.set_flush_denormal(True)


def synthetic_clip(frames: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """(1, T, H, W, 3) float in [0, 1]: a smooth background and a square that moves."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.3 + 0.4 * ys, 0.5 + 0.3 * xs, 0.6 - 0.3 * ys], axis=-1)  # (H, W, 3)
    color = rng.uniform(0.0, 1.0, 3)
    clip = []
    for t in range(frames):
        frame = base.copy()
        x0 = 8 + 6 * t
        frame[24:40, x0 : x0 + 12] = color
        frame[50:58, :] = (0.4, 0.25, 0.1)  # ground
        clip.append(frame)
    return torch.tensor(np.stack(clip)[None], dtype=torch.float32)


@pytest.fixture
def tiny_config():
    """The tiny preset with fewer layers where a test needs only the wiring."""
    return preset("tiny")


# A very small model: fast tests of behaviour that does not depend on size.
SMALL_MODEL = [
    "tokenizer.dim=32",
    "tokenizer.ffn=64",
    "tokenizer.heads=2",
    "tokenizer.enc_depth=1",
    "tokenizer.dec_depth=1",
    "tokenizer.quantizer.codes=64",
    "tokenizer.quantizer.code_dim=8",
    "lam.dim=32",
    "lam.ffn=64",
    "lam.heads=2",
    "lam.enc_depth=1",
    "lam.dec_depth=1",
    "dynamics.dim=32",
    "dynamics.ffn=64",
    "dynamics.heads=2",
    "image_size=32",
]


@pytest.fixture
def small_config():
    return preset("tiny", [*SMALL_MODEL, "dynamics.depth=2", "frames=6"])


def count_step_logits(world) -> dict:
    """Wrap world.dynamics.step_logits and commit so tests can count the dynamics model's
    passes (MaskGIT steps plus cache commits): returns {"n": passes}."""
    calls = {"n": 0}

    def counted(original):
        def counting(*args, **kwargs):
            calls["n"] += 1
            return original(*args, **kwargs)

        return counting

    world.dynamics.step_logits = counted(world.dynamics.step_logits)
    world.dynamics.commit = counted(world.dynamics.commit)
    return calls


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def sigint_default() -> None:
    """``preexec_fn`` for a subprocess that a test stops with SIGINT (Ctrl-C).

    A shell without job control starts background jobs with SIGINT ignored, and children
    inherit that, so Python in the child would never raise KeyboardInterrupt and the test would
    time out only because of how the test run was started. Restore the default in the child.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
