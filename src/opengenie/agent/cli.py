"""`opengenie agent ...`: learn to play CoinRun from expert video through a World's latent
actions (`train`), play the real game with it beside the baselines (`eval`), and measure
success against the number of labels (`curve`). Heavy imports happen inside the commands."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from opengenie.errors import UserError
from opengenie.options import SEED, at_least

TRAIN_HELP = """Imitate an expert from its video (paper §3.3): the World's frozen LAM labels
each world step of the expert's episodes with a latent action, a policy is behaviour-cloned on
those, and N labelled transitions map latent actions to CoinRun's real ones. The oracle (the
same network cloned on all the real actions) is trained beside it for comparison.

  opengenie data coinrun --out data/expert --policy expert --mode easy --episodes 500
  opengenie agent train --data data/expert --labels 200 --out agents/mine
"""

EVAL_HELP = """Play CoinRun with the agent on held-out levels and report the share solved
(95% Wilson interval) beside the baselines on the same levels and seeds: the oracle, the
expert, "always RIGHT+UP" and a uniformly random policy. Writes agent_eval.json and a GIF of
the agent's first episode into --out.

  opengenie agent eval                      # the shipped agent, test levels 200000:200100
  opengenie agent eval --agent agents/mine --levels 200000:200200 --mode hard
"""


CURVE_HELP = """The label curve: the latent-action agent's share of levels solved against the
number of labelled transitions N that map its latent actions to real ones, for several seeds
(one cloned policy each; only the mapping changes with N), beside the oracle, RIGHT+UP and
random on the same levels. Writes label_curve.json and label_curve.svg into --out.

  opengenie agent curve --data data/expert --seeds 3 --out docs/agents
"""


def _labels(text: str) -> int | None:
    if text == "all":
        return None
    return at_least(1).parse(text, "--labels")


def _label_list(text: str) -> list[int | None]:
    counts = [_labels(v.strip()) for v in text.split(",") if v.strip()]
    if not counts:
        raise UserError("--labels needs at least one count, e.g. 25,50,100,200,500,all")
    return counts


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from opengenie.agent.train import train_agent

    torch.set_flush_denormal(True)  # as in training: denormals made CPU steps several x slower
    if Path(args.out).exists() and not (Path(args.out) / "config.json").exists():
        raise UserError(f"{args.out} exists and is not an agent: choose another --out")
    t0 = time.time()
    agent, _, _ = train_agent(
        args.world, args.data, args.labels, args.seed, args.mapping, args.steps, not args.no_oracle
    )
    agent.info["train_seconds"] = round(time.time() - t0, 1)
    agent.save(args.out)
    fit = agent.info["latent_policy"]
    print(
        f"saved {args.out}: {agent.info['expert_episodes']} expert episodes, "
        f"{fit['transitions']:,} transitions, {agent.info['codes_used']} latent actions in use, "
        f"held-out imitation accuracy {fit['heldout_accuracy']:.2f}; mapping from "
        f"{agent.info['labels_used']:,} labelled transitions; {agent.info['train_seconds']:.0f} s"
    )
    if agent.info.get("code_actions"):  # with the oracle, which reads every real action
        print("what each latent action was in the expert's video (real actions, share):")
        for code, row in agent.info["code_actions"].items():
            total = sum(row.values())
            top = sorted(row.items(), key=lambda kv: -kv[1])[:3]
            shares = ", ".join(f"{name} {n / total:.2f}" for name, n in top)
            print(f"  code {code}: {total:,} transitions: {shares}")
    return 0


def _levels(args: argparse.Namespace) -> list[int]:
    from opengenie.data.sources import parse_range

    a, b = parse_range(args.levels)
    return list(range(a, b))[: args.episodes]


def cmd_curve(args: argparse.Namespace) -> int:
    import torch

    from opengenie.agent.curve import curve_svg, label_curve
    from opengenie.atomic import atomic_write_json, atomic_write_text

    torch.set_flush_denormal(True)
    counts = tuple(args.labels)
    out = Path(args.out)
    save = None
    if args.save_agents is not None:  # a count, or "all"
        keep = _labels(args.save_agents)
        if keep not in counts:
            raise UserError(f"--save-agents {args.save_agents} is not one of --labels")
        save = (keep, str(out))
    curve = label_curve(
        args.world, args.data, _levels(args), args.mode, args.seeds, counts, args.steps, save
    )
    atomic_write_json(out / "label_curve.json", curve)
    atomic_write_text(out / "label_curve.svg", curve_svg(curve))
    print(
        f"CoinRun {curve['mode']}, levels {curve['levels'][0]}:{curve['levels'][1]}, "
        f"{curve['seeds']} seed(s): share solved by the latent-action agent"
    )
    for n, r in curve["agent"].items():
        print(f"  {n:>5s} labels  {r['success']:.2f}  ({r['ci95'][0]:.2f}-{r['ci95'][1]:.2f})")
    for k in ("oracle", "right+up", "random"):
        print(f"  {k:>12s}  {curve[k]['success']:.2f}")
    print(f"wrote {out / 'label_curve.json'} and {out / 'label_curve.svg'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from opengenie.agent.agent import Agent
    from opengenie.agent.evaluate import PLAYERS, evaluate_agent
    from opengenie.atomic import atomic_write_json
    from opengenie.videowrite import write_video

    players = tuple(p.strip() for p in args.players.split(",") if p.strip())
    unknown = [p for p in players if p not in PLAYERS]
    if unknown or not players:
        raise UserError(
            f"unknown player {unknown[0] if unknown else '(none)'}; use: {', '.join(PLAYERS)}"
        )
    levels = _levels(args)
    import torch

    agent = Agent.load(args.agent)
    seen = agent.info.get("expert_levels")
    if seen and levels[0] < seen[1] and seen[0] < levels[-1] + 1:
        print(
            f"warning: levels {levels[0]}:{levels[-1] + 1} overlap the expert's training levels "
            f"{seen[0]}:{seen[1]}; held-out levels give the honest figure",
            file=sys.stderr,
        )
    torch.set_flush_denormal(True)
    t0 = time.time()
    results, movie = evaluate_agent(agent, levels, args.mode, players, args.seeds)
    seconds = time.time() - t0
    out = Path(args.out)
    report = {
        "agent": str(args.agent or "shipped coinrun_agent"),
        "mode": args.mode,
        "levels": [levels[0], levels[-1] + 1],
        "episodes_per_player": len(levels),
        "seeds": args.seeds,
        "seconds": round(seconds, 1),
        "agent_info": agent.info,
        "players": results,
    }
    atomic_write_json(out / "agent_eval.json", report)
    if movie:
        write_video(movie, out / "episode.gif", fps=15, scale=4)
    print(
        f"CoinRun {args.mode}, levels {levels[0]}:{levels[-1] + 1} ({len(levels)}), "
        f"{args.seeds} seed(s), {seconds:.0f} s"
    )
    paired = "  minus RIGHT+UP, paired per level (95%)" if "right+up" in results else ""
    print(f"{'player':10s} {'solved':>7s}  95% interval{paired}")
    for name, r in results.items():
        low, high = r["ci95"]
        line = f"{name:10s} {r['success']:7.2f}  {low:.2f}-{high:.2f}"
        if "vs_right_up" in r:
            d, (dl, dh) = r["vs_right_up"]["difference"], r["vs_right_up"]["ci95"]
            line += f"     {d:+.3f} ({dl:+.3f} to {dh:+.3f})"
        print(line)
    print(f"wrote {out / 'agent_eval.json'}" + (f" and {out / 'episode.gif'}" if movie else ""))
    return 0


def _add_world_and_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world", help="World directory (default: the shipped CoinRun world)")
    p.add_argument(
        "--data", required=True, help="expert dataset (opengenie data coinrun --policy expert)"
    )


def _add_levels(p: argparse.ArgumentParser, default: str) -> None:
    """The held-out levels a command plays: --levels, --episodes, --mode."""
    p.add_argument(
        "--levels",
        default=default,
        metavar="A:B",
        help=f"half-open level range, held out from training (default {default})",
    )
    p.add_argument(
        "--episodes",
        type=at_least(1).arg("--episodes"),
        help="play only the first N levels of the range",
    )
    p.add_argument("--mode", choices=("easy", "hard"), default="easy", help="Procgen mode (easy)")


def add_parser(commands: argparse._SubParsersAction) -> None:
    from opengenie.agent.mapping import MAPPINGS

    fmt = argparse.RawDescriptionHelpFormatter
    agent = commands.add_parser(
        "agent", help="agents from latent actions: train on expert video, eval in CoinRun"
    )
    sub = agent.add_subparsers(dest="agent_command", metavar="{train,eval,curve}")
    sub.required = True

    p = sub.add_parser(
        "train",
        help="clone an expert through latent actions",
        description=TRAIN_HELP,
        formatter_class=fmt,
    )
    _add_world_and_data(p)
    p.add_argument(
        "--labels",
        type=_labels,
        default=200,
        help="labelled transitions for the latent -> real mapping, or 'all' (default 200)",
    )
    p.add_argument("--out", required=True, help="agent directory to write")
    p.add_argument(
        "--seed", type=SEED.arg("--seed"), default=0, help="seed of training and labels (0)"
    )
    p.add_argument(
        "--mapping",
        choices=MAPPINGS,
        default="dictionary",
        help="latent -> real: the paper's dictionary, or a small learned decoder",
    )
    p.add_argument(
        "--steps",
        type=at_least(1).arg("--steps"),
        default=2000,
        help="behaviour-cloning steps of 128 transitions (2000)",
    )
    p.add_argument("--no-oracle", action="store_true", help="skip the oracle (real-action clone)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "eval",
        help="play CoinRun: share of levels solved, with baselines",
        description=EVAL_HELP,
        formatter_class=fmt,
    )
    p.add_argument("--agent", help="agent directory (default: the shipped CoinRun agent)")
    _add_levels(p, "200000:200100")
    p.add_argument(
        "--players",
        default="agent,oracle,expert,right+up,random",
        help="comma-separated players to run (default: all)",
    )
    p.add_argument(
        "--seeds",
        type=at_least(1).arg("--seeds"),
        default=1,
        help="runs per level of the sampling players (1)",
    )
    p.add_argument("--out", default="runs/agent_eval", help="directory for the JSON and GIF")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "curve",
        help="success against the number of labels, several seeds",
        description=CURVE_HELP,
        formatter_class=fmt,
    )
    _add_world_and_data(p)
    p.add_argument(
        "--labels",
        type=_label_list,
        default="25,50,100,200,500,all",
        help="label counts, comma-separated, 'all' for every transition",
    )
    p.add_argument(
        "--seeds",
        type=at_least(1).arg("--seeds"),
        default=3,
        help="seeds: one cloned policy and label draw each (3)",
    )
    _add_levels(p, "200000:200200")
    p.add_argument(
        "--steps",
        type=at_least(1).arg("--steps"),
        default=2000,
        help="behaviour-cloning steps per seed (2000)",
    )
    p.add_argument("--out", default="runs/label_curve", help="directory for the JSON and SVG")
    p.add_argument(
        "--save-agents",
        metavar="N",
        help="also save each seed's agent with the N-label mapping as OUT/agent-seedS",
    )
    p.set_defaults(func=cmd_curve)
