"""Writing clips to GIF (Pillow) or MP4 (PyAV), atomically, upscaled with crisp pixels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from opengenie.errors import UserError


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an (H, W, 3) frame, so pixels stay crisp."""
    return frame.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else frame


def write_video(
    frames: list[np.ndarray], path: str | os.PathLike, fps: int, scale: int = 1
) -> Path:
    """Write (H, W, 3) uint8 frames to .gif or .mp4; the file appears only once complete."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise UserError(f"cannot write {path.name}: use a .gif or .mp4 file name")
    if not frames:
        raise UserError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{suffix}")
    big = [upscale(f, scale) for f in frames]
    try:
        if suffix == ".gif":
            images = [Image.fromarray(f) for f in big]
            duration = max(20, round(1000 / fps))
            images[0].save(tmp, save_all=True, append_images=images[1:], duration=duration, loop=0)
        else:
            _write_mp4(big, tmp, fps)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_mp4(frames: list[np.ndarray], path: Path, fps: int) -> None:
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            image = av.VideoFrame.from_ndarray(frame[: stream.height, : stream.width], "rgb24")
            container.mux(stream.encode(image))
        container.mux(stream.encode())
