"""Reading prompt images of any size: centre-crop to a square, resize, RGB uint8."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from opengenie.errors import UserError

MAX_PROMPT_PIXELS = 64_000_000  # refuse decompression bombs


def load_prompt(prompt, size: int) -> np.ndarray:
    """A path, bytes-like file, PIL image or (H, W, 3) uint8 array -> (size, size, 3) uint8."""
    if isinstance(prompt, np.ndarray):
        if prompt.ndim != 3 or prompt.shape[-1] not in (3, 4) or prompt.dtype != np.uint8:
            raise UserError("a prompt array must be (H, W, 3) uint8")
        image = Image.fromarray(prompt[..., :3])
    elif isinstance(prompt, Image.Image):
        image = prompt
    else:
        try:
            image = Image.open(prompt)
            if image.width * image.height > MAX_PROMPT_PIXELS:
                raise UserError(f"prompt image is too large ({image.width}x{image.height})")
            image.load()
        except (UnidentifiedImageError, OSError, ValueError) as error:
            name = os.fspath(prompt) if isinstance(prompt, (str, os.PathLike)) else "upload"
            raise UserError(f"cannot read prompt image {name}: not a readable image") from error
    return square_resize(image.convert("RGB"), size)


def square_resize(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to (size, size, 3) uint8."""
    side = min(image.width, image.height)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
