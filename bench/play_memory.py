"""Benchmark: the play server's resident memory as rounds of players join, play and leave.

    python bench/play_memory.py                   # the shipped world, 4 rounds of 8 players
    python bench/play_memory.py --no-release      # without handing freed pages back (before)

One PlayServer in this process (aiohttp's test server on a local port); each round, --players
tabs connect at once, step --steps-per-player times each and close. The process's resident set
size (RSS, from /proc/self/statm) is read fresh (after one short player) and after each round,
and written to JSON beside whether freed memory was handed back when players left
(opengenie.play.memory). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from aiohttp.test_utils import TestClient, TestServer

from opengenie.atomic import atomic_write_json
from opengenie.models import World
from opengenie.play import server as play_server
from opengenie.play.server import PlayOptions, PlayServer


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _player(client: TestClient, steps: int) -> None:
    ws = await client.ws_connect("/ws")
    await ws.receive()  # info
    await ws.receive()  # the prompt frame
    for i in range(steps):
        await ws.send_json({"type": "step", "action": i % 4})
        await ws.receive()
    await ws.close()


async def _run(args: argparse.Namespace) -> dict:
    world = World.load(args.world).set_dynamics_dtype(torch.bfloat16)
    size = world.config.image_size
    server = PlayServer(world, np.zeros((size, size, 3), np.uint8), PlayOptions(steps=2))
    rounds = []
    async with TestClient(TestServer(server.app())) as client:
        await _player(client, 2)
        gc.collect()
        fresh = rss_mb()
        for r in range(args.rounds):
            players = (_player(client, args.steps_per_player) for _ in range(args.players))
            await asyncio.gather(*players)
            while server.players:  # the server notices closes asynchronously
                await asyncio.sleep(0.05)
            gc.collect()
            rounds.append(round(rss_mb(), 1))
            print(f"round {r + 1}: {rounds[-1]:.0f} MB (fresh {fresh:.0f} MB)", flush=True)
    return {"fresh_mb": round(fresh, 1), "after_rounds_mb": rounds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", help="World directory (default: the shipped CoinRun world)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--players", type=int, default=8)
    p.add_argument("--steps-per-player", type=int, default=20)
    p.add_argument("--no-release", action="store_true", help="do not hand freed pages back")
    p.add_argument("--out", default="bench/results/play_memory.json")
    args = p.parse_args()
    if args.no_release:
        play_server.release_freed_memory = lambda: False
    torch.set_flush_denormal(True)
    result = asyncio.run(_run(args))
    report = {
        "bench": "play_memory",
        "world": str(args.world or "shipped"),
        "release_freed_memory": not args.no_release,
        "players_per_round": args.players,
        "steps_per_player": args.steps_per_player,
        **result,
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    atomic_write_json(Path(args.out), report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
