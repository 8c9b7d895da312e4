"""The CoinRun world that ships inside the package (issue #7)."""

import json

import numpy as np
import pytest

from opengenie.models import World
from opengenie.models.world import SHIPPED_WORLD

pytestmark = pytest.mark.skipif(
    not (SHIPPED_WORLD / "config.json").exists(),
    reason="no world ships in src/opengenie/assets/coinrun_world yet (scripts/ship_world.py)",
)


def test_shipped_world_fits_the_package_budget():
    size = sum(f.stat().st_size for f in SHIPPED_WORLD.rglob("*") if f.is_file())
    assert size <= 30 * 2**20
    for name in ("MODEL_CARD.md", "action_map.json", "metrics.json", "prompt.png"):
        assert (SHIPPED_WORLD / name).exists(), name
    assert len(list((SHIPPED_WORLD / "prompts").glob("*.png"))) >= 3


def test_world_load_without_a_path_plays_the_shipped_world():
    world = World.load()
    assert world.action_map is not None  # arrow keys in play
    world.sampling.steps = 2
    first = world.reset(SHIPPED_WORLD / "prompt.png", seed=0)
    frame = world.step(0)
    size = world.config.image_size
    assert first.shape == frame.shape == (size, size, 3) and frame.dtype == np.uint8
    metrics = json.loads((SHIPPED_WORLD / "metrics.json").read_text())
    assert len(metrics["actions"]["codes_used"]) >= 6  # issue #7: >= 6 latent actions in use
    assert metrics["settings"]["split"] == "test" and metrics["settings"]["protocol"]
