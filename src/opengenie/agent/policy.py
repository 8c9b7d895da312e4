"""The agents' policy: a small CNN over the last few world-step frames (paper §3.3, App. E).

Genie's policy is an ST-ViViT over 4 frames with the previous actions as additive embeddings;
here the 4 frames are stacked as channels of a DQN-style CNN (it runs at thousands of frames a
second on a CPU core), without previous actions (they invite the "copycat" shortcut in
behaviour cloning). The same network is the latent-action agent (classes = the LAM's codes) and
the oracle (classes = Procgen's 15 actions), so the two differ only in what they imitate.
"""

from __future__ import annotations

import torch
from torch import nn

CONTEXT = 4  # frames the policy sees: x_{t-3..t}, one world step apart


class FramePolicy(nn.Module):
    """π(class | x_{t-K+1..t}): logits over `classes` from K stacked 64x64 RGB frames."""

    def __init__(self, classes: int, context: int = CONTEXT, width: int = 32) -> None:
        super().__init__()
        self.classes, self.context, self.width = classes, context, width
        self.body = nn.Sequential(
            nn.Conv2d(3 * context, width, 8, stride=4),  # 64 -> 15
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2),  # 15 -> 6
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3),  # 6 -> 4
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 16, 256),
            nn.ReLU(),
            nn.Linear(256, classes),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames uint8 (B, K, 64, 64, 3), oldest first -> logits (B, classes)."""
        b, k, h, w, c = frames.shape
        x = frames.permute(0, 1, 4, 2, 3).reshape(b, k * c, h, w)  # (B, K*3, H, W)
        return self.body(x.float().div(255))

    def config(self) -> dict:
        return {"classes": self.classes, "context": self.context, "width": self.width}


def context_indices(t: int, context: int = CONTEXT) -> list[int]:
    """Indices of the `context` frames ending at step t, the first frame repeated before 0."""
    return [max(0, t - context + 1 + i) for i in range(context)]
