"""Whether bf16 matmuls pay on this machine: measured, not presumed.

CPUs with native bf16 (AVX512-BF16, AMX) run bf16 matmuls 2-4x faster than fp32; CPUs without
it (e.g. AVX2-only hosts) emulate them, measured here at ~150x *slower* (a 1024^2 matmul: 2.2 s
against 14 ms). ``--precision auto`` (the default of play and eval) picks bf16 only where a
short matmul test says it is faster; CUDA devices with bf16 support always take it.
"""

from __future__ import annotations

import functools
import time

import torch

PRECISIONS = ("auto", "bf16", "fp32")
_SIZE = 256  # big enough to show the kernel's speed, small enough to time in milliseconds


def _seconds(dtype: torch.dtype, repeats: int = 3) -> float:
    a = torch.randn(_SIZE, _SIZE).to(dtype)
    b = torch.randn(_SIZE, _SIZE).to(dtype)
    a @ b  # warm-up: first calls pay for kernel selection
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return time.perf_counter() - start


@functools.cache
def cpu_bf16_is_faster() -> bool:
    """True when bf16 matmuls beat fp32 on this CPU (timed once per process, ~10 ms)."""
    return _seconds(torch.bfloat16) < 0.8 * _seconds(torch.float32)


def resolve_precision(choice: str, device: str | torch.device = "cpu") -> str:
    """ "auto" | "bf16" | "fp32" -> "bf16" | "fp32" for the dynamics model on ``device``."""
    if choice not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {choice!r}")
    if choice != "auto":
        return choice
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if dev.type == "cpu":
        return "bf16" if cpu_bf16_is_faster() else "fp32"
    return "fp32"
