"""`opengenie agent train`: imitate an expert from its video through a World's latent actions.

1. The expert's episodes, one frame per world step (every `frame_skip`-th game frame).
2. The World's frozen LAM names each step's transition with a latent action.
3. A policy is behaviour-cloned on those latent actions (no real action is read here).
4. N labelled transitions (latent action, real action) fit the latent -> real mapping.
5. The oracle: the same network cloned on all the expert's real actions, for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from opengenie.agent.mapping import LatentToReal, pair_counts
from opengenie.agent.policy import CONTEXT, FramePolicy, context_indices
from opengenie.data.coinrun import MOVEMENT_ACTION, NUM_ACTIONS, procgen_source
from opengenie.data.storage import open_dataset
from opengenie.errors import UserError
from opengenie.models.lam import LatentActionModel

if TYPE_CHECKING:  # agent.py imports the World; loaded inside train_agent
    from opengenie.agent.agent import Agent


@dataclass
class ExpertSteps:
    """The expert's episodes at one frame per world step."""

    frames: list[np.ndarray]  # per episode uint8 (n, H, W, 3)
    actions: list[np.ndarray]  # per episode (n-1,): the real action held over each step
    levels: list[int]

    def transitions(self) -> list[tuple[int, int]]:
        """(episode, step) of every transition, in order."""
        return [(e, t) for e, a in enumerate(self.actions) for t in range(len(a))]


def load_expert(path: str, frame_skip: int, split: str = "train") -> ExpertSteps:
    """Every `frame_skip`-th frame of each CoinRun episode of `split` with its true actions (the
    action taken at the step's first frame: the expert holds one action per world step)."""
    data = open_dataset(path)
    coinrun = {procgen_source("coinrun", m) for m in ("easy", "hard")}
    frames, actions, levels = [], [], []
    for ep in data.episodes(split):
        if ep.source not in coinrun or not ep.has_actions or ep.length <= frame_skip:
            continue
        frames.append(np.array(data.frames(ep.id)[::frame_skip]))  # a copy: writable, in memory
        actions.append(data.actions(ep.id)[::frame_skip][: len(frames[-1]) - 1])
        levels.append(ep.level_seed)
    if not frames:
        raise UserError(
            f"{path} has no CoinRun episodes with actions in split {split!r}: record one with "
            "`opengenie data coinrun --policy expert`"
        )
    return ExpertSteps(frames, actions, levels)


@torch.no_grad()
def lam_codes(lam: LatentActionModel, frames: np.ndarray, window: int) -> np.ndarray:
    """The LAM's latent action of each transition of one episode: (n, H, W, 3) -> (n-1,).

    Windows of `window` frames overlap by one frame, so every transition is seen once."""
    video = torch.from_numpy(frames).float().div(255)  # (n, H, W, 3)
    codes, start = [], 0
    while start < len(video) - 1:
        clip = video[start : start + window][None]  # (1, T, H, W, 3)
        codes.append(lam.infer(clip)[0])  # (T-1,)
        start += window - 1
    return torch.cat(codes).numpy()


def label_episodes(lam: LatentActionModel, steps: ExpertSteps, window: int) -> list[np.ndarray]:
    return [lam_codes(lam, f, window) for f in tqdm(steps.frames, desc="LAM labels", unit="ep")]


def contexts(steps: ExpertSteps, index: list[tuple[int, int]], context: int) -> torch.Tensor:
    """uint8 (B, K, H, W, 3): the K world-step frames ending at each (episode, step)."""
    batch = [steps.frames[e][context_indices(t, context)] for e, t in index]
    return torch.from_numpy(np.stack(batch))


def clone(
    steps: ExpertSteps,
    targets: list[np.ndarray],
    classes: int,
    train_steps: int,
    seed: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    desc: str = "clone",
) -> tuple[FramePolicy, dict]:
    """Behaviour-clone a FramePolicy on per-transition class targets; 10% of episodes held
    out for the accuracy reported. Returns (policy, {loss, train/held-out accuracy})."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    episodes = rng.permutation(len(targets))
    held = set(episodes[: max(1, len(targets) // 10)].tolist())
    pairs = [(e, t) for e, tg in enumerate(targets) for t in range(len(tg))]
    train = [p for p in pairs if p[0] not in held] or pairs
    test = [p for p in pairs if p[0] in held]
    policy = FramePolicy(classes, CONTEXT)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, train_steps)
    policy.train()
    losses = []
    for _ in tqdm(range(train_steps), desc=desc, unit="step"):
        pick = [train[i] for i in rng.integers(len(train), size=batch_size)]
        y = torch.as_tensor([targets[e][t] for e, t in pick])
        with torch.autocast("cpu", dtype=torch.bfloat16):  # 0.15 s vs 0.30 s a step of 128 here
            logits = policy(contexts(steps, pick, CONTEXT))
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    policy.eval()
    return policy, {
        "final_loss": float(np.mean(losses[-50:])),
        "train_accuracy": accuracy(policy, steps, targets, train[:4096]),
        "heldout_accuracy": accuracy(policy, steps, targets, test),
        "transitions": len(pairs),
    }


@torch.no_grad()
def accuracy(
    policy: FramePolicy,
    steps: ExpertSteps,
    targets: list[np.ndarray],
    index: list[tuple[int, int]],
) -> float | None:
    """Share of transitions whose most likely class is the target."""
    if not index:
        return None
    hits = 0
    for i in range(0, len(index), 512):
        part = index[i : i + 512]
        pred = policy(contexts(steps, part, policy.context)).argmax(-1).numpy()
        hits += int((pred == np.array([targets[e][t] for e, t in part])).sum())
    return hits / len(index)


def code_action_counts(
    codes: list[np.ndarray], actions: list[np.ndarray], num_codes: int
) -> np.ndarray:
    """(num_codes, NUM_ACTIONS) int: how often each latent code went with each real action.
    Its rows say which keys a latent action stands for in this video."""
    return pair_counts(np.concatenate(codes), np.concatenate(actions), num_codes)


def code_purity(codes: list[np.ndarray], actions: list[np.ndarray]) -> float:
    """Share of transitions whose real action is the most common one of their latent code:
    1.0 when every latent action names one real action, the majority action's share when the
    codes carry nothing about the controls."""
    counts = code_action_counts(codes, actions, int(np.concatenate(codes).max()) + 1)
    return float(counts.max(1).sum() / counts.sum())


def movement_table(counts: np.ndarray) -> dict[str, dict[str, int]]:
    """The code x action counts as {code: {movement name: count}}, codes and actions seen only."""
    names = {action: name for name, action in MOVEMENT_ACTION.items()}
    return {
        str(code): {names.get(a, f"action {a}"): int(row[a]) for a in np.flatnonzero(row)}
        for code, row in enumerate(counts)
        if row.any()
    }


def fit_mapping(
    steps: ExpertSteps,
    codes: list[np.ndarray],
    labels: int | None,
    seed: int,
    num_codes: int,
    kind: str = "dictionary",
    code_vectors: torch.Tensor | None = None,
) -> LatentToReal:
    """The latent -> real mapping from `labels` transitions drawn at random (None: all).
    Only these transitions' real actions are read."""
    index = steps.transitions()
    if labels is not None and labels < len(index):
        pick = np.random.default_rng([seed, labels]).choice(len(index), labels, replace=False)
        index = [index[i] for i in pick]
    z = np.array([codes[e][t] for e, t in index])
    a = np.array([steps.actions[e][t] for e, t in index])
    if a.min() < 0 or a.max() >= NUM_ACTIONS:
        raise UserError("the labelled transitions need Procgen's action ids (0-14)")
    return LatentToReal.fit(z, a, num_codes, kind, code_vectors)


def train_agent(
    world_dir: str | None,
    data: str,
    labels: int | None,
    seed: int = 0,
    mapping: str = "dictionary",
    train_steps: int = 2000,
    oracle: bool = True,
) -> tuple[Agent, ExpertSteps, list[np.ndarray]]:
    """The whole recipe (module docstring) -> (the Agent, not yet saved; the expert's steps;
    the LAM's codes per episode), the last two for refitting the mapping (the label curve)."""
    from opengenie.agent.agent import Agent
    from opengenie.models.world import World

    # Denormal values slowed cloning steps from 0.15 s to 1.5 s here. The flag is per thread and
    # torch's worker threads copy it when they start: set it before the first parallel op.
    torch.set_flush_denormal(True)
    world = World.load(world_dir)
    steps = load_expert(data, world.config.frame_skip)
    codes = label_episodes(world.lam, steps, world.config.frames)
    num_codes = world.num_actions
    policy, latent_fit = clone(steps, codes, num_codes, train_steps, seed, desc="clone latent")
    vectors = world.lam.action_vectors(torch.arange(num_codes)) if mapping == "decoder" else None
    table = fit_mapping(steps, codes, labels, seed, num_codes, mapping, vectors)
    oracle_net, oracle_fit, purity, table_counts = None, None, None, None
    if oracle:  # reads every real action: the oracle's data, and a diagnostic of the LAM
        oracle_net, oracle_fit = clone(
            steps, steps.actions, NUM_ACTIONS, train_steps, seed, desc="clone oracle"
        )
        purity = code_purity(codes, steps.actions)
        table_counts = movement_table(code_action_counts(codes, steps.actions, num_codes))
    info = {
        "world": str(world_dir) if world_dir else "shipped coinrun_world",
        "expert_data": str(data),
        "expert_episodes": len(steps.frames),
        "expert_levels": [int(min(steps.levels)), int(max(steps.levels)) + 1],  # first, end
        "labels": labels if labels is not None else "all",
        "labels_used": min(labels or len(steps.transitions()), len(steps.transitions())),
        "seed": seed,
        "train_steps": train_steps,
        "latent_policy": latent_fit,
        "oracle": oracle_fit,
        "codes_used": int(np.unique(np.concatenate(codes)).size),
        "code_purity": purity,
        "code_actions": table_counts,  # {code: {real action: transitions}}, all of the video
    }
    return Agent(policy, table, world.config.frame_skip, oracle_net, info), steps, codes
