"""What decides the protocol's numbers (DESIGN.md "Evaluation protocol"); recorded beside them."""

from __future__ import annotations

from dataclasses import dataclass, field

from opengenie.config import CONTEXT_MASK_MAX, PLAY_STEPS  # PLAY_STEPS: beside the protocol's 25
from opengenie.errors import UserError

CLIP_FRAMES = 16  # the protocol's clip length (tokenizer, rollouts and FVD)
PROTOCOL_T = 4  # ΔtPSNR is always reported at t = 4 (paper §3)
PROTOCOL_STEPS = 25
PROTOCOL_TEMPERATURE = 1.0
PROTOCOL_MODE = "random"
USED_CODE_FRACTION = 0.01  # a code is "in use" when >= 1% of the inferred actions pick it
BUTTON_FRAMES = 8  # frames per strip in "what each button does"


@dataclass
class EvalSettings:
    """Everything that decides the numbers; recorded next to them in metrics.json."""

    split: str = "test"
    clips: int = 256
    seed: int = 0
    clip_frames: int = CLIP_FRAMES
    t: int = PROTOCOL_T
    steps: int = PROTOCOL_STEPS
    temperature: float = PROTOCOL_TEMPERATURE
    mode: str = PROTOCOL_MODE
    guidance: float = 0.0  # action guidance in every rollout (maskgit.guided); the paper's 0
    context_mask: float = 0.0  # share of earlier frames' tokens hidden (Dynamics.hide_context)
    min_p: float = 0.0  # min-p truncation of every token's codes (maskgit_fill); the paper's 0
    extra: list[tuple[int, float]] = field(default_factory=lambda: [(PLAY_STEPS, 1.0)])
    batch_size: int = 32
    fvd_clips: int | None = None  # None: all clips; 0: skip FVD
    used_code_fraction: float = USED_CODE_FRACTION
    bootstrap_resamples: int = 10_000
    dynamics_precision: str = "bf16"  # "bf16": bf16 autocast for the dynamics model; "fp32"
    button_prompts: int = 2
    control_levels: int = 32  # levels of the held-key control measurement (0: skip)

    def check(self) -> EvalSettings:
        if self.clips < 2:
            raise UserError(
                f"--clips must be >= 2 (the protocol asks for >= 256), got {self.clips}"
            )
        if not 1 <= self.t < self.clip_frames:
            raise UserError(f"--t must be in 1..{self.clip_frames - 1}, got {self.t}")
        for steps, temperature in [(self.steps, self.temperature), *self.extra]:
            if steps < 1:
                raise UserError(f"MaskGIT steps must be >= 1, got {steps}")
            if not temperature > 0:
                raise UserError(f"temperature must be > 0, got {temperature}")
        if not 0 <= self.guidance <= 10:
            raise UserError(f"--guidance must be in 0..10, got {self.guidance}")
        if not 0 <= self.context_mask <= CONTEXT_MASK_MAX:
            top = CONTEXT_MASK_MAX
            raise UserError(f"--context-mask must be in [0, {top}], got {self.context_mask}")
        if not 0 <= self.min_p <= 1:
            raise UserError(f"--min-p must be in 0..1, got {self.min_p}")
        if self.mode not in ("random", "argmax"):
            raise UserError(f"mode must be 'random' or 'argmax', got {self.mode!r}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.fvd_clips is not None and self.fvd_clips < 0:
            raise UserError(f"--fvd-clips must be >= 0, got {self.fvd_clips}")
        if self.dynamics_precision not in ("bf16", "fp32"):
            raise UserError(f"precision must be bf16 or fp32, got {self.dynamics_precision!r}")
        if self.control_levels < 0:
            raise UserError(f"--control-levels must be >= 0, got {self.control_levels}")
        return self

    @property
    def is_protocol(self) -> bool:
        """True when the headline ΔtPSNR uses the protocol's settings exactly."""
        return (
            self.t == PROTOCOL_T
            and self.steps == PROTOCOL_STEPS
            and self.temperature == PROTOCOL_TEMPERATURE
            and self.mode == PROTOCOL_MODE
            and self.guidance == 0
            and self.context_mask == 0
            and self.min_p == 0
            and self.used_code_fraction == USED_CODE_FRACTION
            and self.clip_frames == CLIP_FRAMES
        )

    @property
    def samplings(self) -> list[tuple[int, float]]:
        """(steps, temperature) pairs scored: the headline first, then the distinct extras."""
        head = (self.steps, self.temperature)
        return [head] + [e for e in self.extra if e != head]
