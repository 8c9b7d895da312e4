"""Can the tiny models learn at all? Overfit one clip, budgeted by step count (not by clock)."""

import torch

from opengenie.config import preset
from opengenie.models import Dynamics, VideoTokenizer

from .conftest import synthetic_clip


def test_tiny_tokenizer_reconstructs_one_clip_above_30db():
    torch.manual_seed(0)
    tok = VideoTokenizer(preset("tiny")).train()
    clip = synthetic_clip(4)  # (1, 4, 64, 64, 3)
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-3, betas=(0.9, 0.99))
    for _ in range(400):
        loss = tok(clip)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    recon = tok.decode(tok.encode(clip))  # through the discrete tokens
    psnr = -10 * torch.log10(((recon - clip) ** 2).mean())
    assert psnr >= 30.0


def test_tiny_dynamics_memorises_one_clips_tokens():
    torch.manual_seed(0)
    cfg = preset("tiny")
    dyn = Dynamics(cfg).train()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.tokenizer.quantizer.codes, (1, 4, 64), generator=g)
    actions = torch.randn(1, 3, cfg.lam.quantizer.code_dim)
    opt = torch.optim.AdamW(dyn.parameters(), lr=1e-3, betas=(0.9, 0.99))
    for _ in range(100):
        loss = dyn.masked_loss(tokens, actions, g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    dyn.eval()
    with torch.no_grad():
        accuracy = dyn.masked_loss(tokens, actions, torch.Generator().manual_seed(99))["accuracy"]
    assert accuracy >= 0.9
