"""Short probes of latent-action levers, judged on the game's own held-key videos (issue 14).

Trains a LAM alone (no dynamics) from the tiny preset with ``--set`` overrides for a few CPU
minutes, or with ``--idm`` a supervised inverse-dynamics model (the same encoder, a 6-way head
on CoinRun's movements): the ceiling any LAM can reach on that data. Then reads the codes (or
predicted movements) on held-key videos from test levels, as eval's control section does.

  python scripts/probe_lam.py --data data/held --minutes 12 --set lam.decoder_context=latest \\
      --out runs/probes/latest.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from opengenie.config import preset
from opengenie.data import ClipLoader, open_dataset
from opengenie.data.coinrun import COINRUN_GROUP_NAMES, coinrun_action_group
from opengenie.eval.control import held_code_table, lam_section
from opengenie.eval.held_keys import HeldKeyVideos, record_held_keys
from opengenie.eval.metrics import nmi
from opengenie.models.lam import LatentActionModel
from opengenie.train.labels import movement_labels


class IDM(nn.Module):
    """The LAM's encoder with a classifier on CoinRun's 6 movements instead of a codebook."""

    def __init__(self, lam: LatentActionModel) -> None:
        super().__init__()
        self.lam = lam
        self.head = nn.Linear(lam.enc_out.out_features, len(COINRUN_GROUP_NAMES))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(self.lam._continuous_actions(video))  # (B, T-1, 6)


def held_videos(levels: int, cache: Path) -> HeldKeyVideos:
    if cache.exists():
        d = np.load(cache)
        return HeldKeyVideos(d["levels"], d["videos"], d["valid"])
    held = record_held_keys(range(200_000, 200_000 + levels))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, levels=held.levels, videos=held.videos, valid=held.valid)
    return held


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--minutes", type=float, default=12)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--idm", action="store_true")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--frame-skip", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--held-levels", type=int, default=32)
    p.add_argument("--held-cache", default="runs/probes/held_test32.npz")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    config = preset("tiny", args.set)
    lam = LatentActionModel(config)
    model = IDM(lam) if args.idm else lam
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.9), weight_decay=1e-4)
    loader = ClipLoader(
        open_dataset(args.data), "train", clip_frames=args.frames, batch_size=args.batch, seed=0,
        frame_skip=args.frame_skip,
    )  # fmt: skip
    start, step, log = time.time(), 0, []
    model.train()
    for batch in loader:
        if time.time() - start > args.minutes * 60:
            break
        video = batch["frames"].float().div_(255)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if args.idm:
                labels = torch.as_tensor(coinrun_action_group(batch["actions"].numpy()))
                logits = model(video).float()
                loss = F.cross_entropy(logits.reshape(-1, 6), labels.reshape(-1), ignore_index=-1)
                extra = {}
            else:
                fraction = config.lam.label_fraction
                out = model(video, movement_labels(batch, fraction) if fraction > 0 else None)
                loss, extra = out["loss"], {"used": float(out["codes_used"])}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            log.append({"step": step, "loss": float(loss), **extra})
            print(json.dumps(log[-1]), flush=True)
    minutes = (time.time() - start) / 60
    # The same 16 game frames, one transition per world step of --frame-skip frames.
    held = held_videos(args.held_levels, Path(args.held_cache)).every(args.frame_skip)
    videos = torch.as_tensor(held.videos.reshape(-1, *held.videos.shape[3:]))
    model.eval()
    with torch.no_grad():
        parts = []
        for i in range(0, len(videos), 64):
            v = videos[i : i + 64].float().div(255)
            parts.append((model(v).argmax(-1) if args.idm else lam.infer(v)).numpy())
    codes = np.concatenate(parts).reshape(*held.videos.shape[:3], -1)  # (L, S, M, F)
    num = len(COINRUN_GROUP_NAMES) if args.idm else lam.num_actions
    table = held_code_table(codes, held.valid, num, start=1)
    result = {
        "args": vars(args),
        "steps": step,
        "minutes": round(minutes, 1),
        "held": lam_section(table),
        "log": log[-5:],
    }
    if args.idm:  # accuracy: the predicted movement is the held one
        names = COINRUN_GROUP_NAMES
        acc = {n: float(table[m, m] / max(table[:, m].sum(), 1)) for m, n in enumerate(names)}
        result["held"]["accuracy"] = acc
        flat = np.repeat(np.arange(num), table.sum(1))
        result["held"]["check_nmi"] = nmi(flat, flat)  # 1.0: sanity of the NMI helper
    per = result["held"]["per_movement"]
    print(
        json.dumps({k: (v["dominant_code"], round(v["share"] or 0, 2)) for k, v in per.items()}),
        "NMI",
        round(result["held"]["nmi"] or 0, 3),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
