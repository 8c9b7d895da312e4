"""The scroll estimator on frames shifted by known amounts, and on the game's own frames."""

from __future__ import annotations

import numpy as np
import pytest

from opengenie.eval.scroll import estimate_scroll


def _scene(size: int = 160, seed: int = 0) -> np.ndarray:
    """A textured scene larger than a frame: blocks of random colours, then a little noise."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (size // 8, size // 8, 3))
    scene = np.kron(blocks, np.ones((8, 8, 1))) + rng.normal(0, 6, (size, size, 3))
    return np.clip(scene, 0, 255).astype(np.uint8)


def _view(scene: np.ndarray, x: int, y: int, size: int = 64) -> np.ndarray:
    """The camera's 64x64 view with its top-left corner at (x, y) of the scene (y down)."""
    return scene[y : y + size, x : x + size]


@pytest.mark.parametrize(("dx", "dy"), [(0, 0), (5, 0), (-7, 0), (0, 12), (0, -30), (15, -9)])
def test_known_camera_moves(dx: int, dy: int) -> None:
    scene = _scene()
    x0 = y0 = 48
    start = _view(scene, x0, y0)
    # The camera moving right shows scene columns further right; moving up shows rows above.
    later = _view(scene, x0 + dx, y0 - dy)
    got_dx, got_dy = estimate_scroll(start, later)
    assert got_dx == pytest.approx(dx, abs=0.5)
    assert got_dy == pytest.approx(dy, abs=0.5)


def test_batches_keep_their_shape() -> None:
    scene = _scene(seed=1)
    starts = np.stack([[_view(scene, 40, 40)] * 3] * 2)  # (2, 3, 64, 64, 3)
    moves = [(0, 0), (3, 0), (-4, 6)]
    later = np.stack([[_view(scene, 40 + mx, 40 - my) for mx, my in moves]] * 2)
    dx, dy = estimate_scroll(starts, later)
    assert dx.shape == dy.shape == (2, 3)
    np.testing.assert_allclose(dx[1], [m[0] for m in moves], atol=0.5)
    np.testing.assert_allclose(dy[0], [m[1] for m in moves], atol=0.5)


def test_content_moving_left_is_the_camera_moving_right() -> None:
    scene = _scene(seed=2)
    start = _view(scene, 50, 50)
    content_left = np.roll(start, -6, axis=1)  # what was at x + 6 is now at x
    dx, dy = estimate_scroll(start, content_left)
    assert dx == pytest.approx(6, abs=0.5) and dy == pytest.approx(0, abs=0.5)


def test_rejects_mismatched_frames() -> None:
    with pytest.raises(ValueError):
        estimate_scroll(np.zeros((64, 64, 3)), np.zeros((32, 32, 3)))


def test_running_right_in_coinrun_scrolls_right() -> None:
    pytest.importorskip("procgen", reason="needs procgen-mirror (pip install 'opengenie[coinrun]')")
    from opengenie.eval.held_keys import record_held_keys

    held = record_held_keys([200000], frames=16, progress=False)
    video = held.videos[0, 0, 4]  # level start, "right"
    dx, dy = estimate_scroll(np.broadcast_to(video[:1], video.shape), video)
    assert dx[0] == 0 and 10 <= dx[16] <= 20  # REFERENCE.md §4: about 15 px in 16 frames
    assert np.all(np.diff(dx) >= -0.5)  # it keeps going one way
    assert np.all(np.abs(dy) < 1)
