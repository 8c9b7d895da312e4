"""Reading prompt images of any size: centre-crop to a square, resize, RGB uint8.

`read_image` is the one place a prompt file is decoded (generate's and play's --prompt, a World's
prompt.png, the play page's uploads): whatever is wrong with the file (missing, not an image,
truncated, a decompression bomb) becomes one UserError naming it."""

from __future__ import annotations

import os
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from opengenie.errors import UserError

MAX_PROMPT_PIXELS = 64_000_000  # refuse decompression bombs

# What Pillow raises for files it cannot decode: OSError (truncated data, unknown mode),
# ValueError, SyntaxError/struct.error/EOFError from some format plugins, zlib.error.
_DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError)
_DECODE_ERRORS += (struct.error, zlib.error)


def read_image(source, name: str | None = None) -> Image.Image:
    """Decode an image file (a path or a binary file object) to an RGB PIL image."""
    if name is None:
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "upload"
    prefix = f"cannot read prompt image {name}"
    limit = f"the most is {MAX_PROMPT_PIXELS // 1_000_000} million pixels"
    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise UserError(f"{prefix}: no such file")
        if os.path.isdir(source):
            raise UserError(f"{prefix}: it is a directory, not an image file")
    try:
        with warnings.catch_warnings():  # our own limit is lower than Pillow's warning's
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
        if image.width * image.height > MAX_PROMPT_PIXELS:
            size = f"{image.width}x{image.height}"
            raise UserError(f"{prefix}: {size} is too large ({limit})")
        image.load()
        return image.convert("RGB")
    except Image.DecompressionBombError:  # Pillow's own guard, far above ours; not an OSError
        raise UserError(f"{prefix}: too large ({limit})") from None
    except PermissionError:
        raise UserError(f"{prefix}: permission denied") from None
    except _DECODE_ERRORS as error:
        raise UserError(f"{prefix}: not a readable image") from error


def load_prompt(prompt, size: int) -> np.ndarray:
    """A path, bytes-like file, PIL image or (H, W, 3) uint8 array -> (size, size, 3) uint8."""
    if isinstance(prompt, np.ndarray):
        if prompt.ndim != 3 or prompt.shape[-1] not in (3, 4) or prompt.dtype != np.uint8:
            raise UserError("a prompt array must be (H, W, 3) uint8")
        image = Image.fromarray(prompt[..., :3])
    elif isinstance(prompt, Image.Image):
        image = prompt.convert("RGB")
    else:
        image = read_image(prompt)
    return square_resize(image, size)


def square_resize(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to (size, size, 3) uint8."""
    side = min(image.width, image.height)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
