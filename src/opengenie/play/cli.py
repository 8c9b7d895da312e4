"""`opengenie play`: serve a World on a local web page and play it with the keyboard."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import threading
import webbrowser
from pathlib import Path

from opengenie.config import PLAY_STEPS
from opengenie.errors import UserError
from opengenie.options import (
    CONTEXT_MASK,
    GUIDANCE,
    MIN_P,
    PORT,
    STEPS,
    TEMPERATURE,
    UPLOAD_MB,
    at_least,
)
from opengenie.precision import PRECISIONS, resolve_precision

DEFAULT_STEPS = PLAY_STEPS  # MaskGIT steps per frame in play (config.PLAY_STEPS, see PLAY.md)


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "play",
        help="play a world in the browser (keys 1..|A|, arrows/space with an action map)",
        description="Serve a World on a local page: pick latent actions with the keyboard and "
        "watch the world respond in real time. Frames stream over a websocket; every browser "
        "tab gets its own session.",
    )
    p.add_argument("--world", help="World directory (default: the shipped CoinRun world)")
    p.add_argument(
        "--prompt",
        help="starting image, any size (default: the world's prompt.png, else a grey frame); "
        "tabs can upload their own",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    p.add_argument(
        "--port", type=PORT.arg("--port"), default=8000, help="port (default 8000; 0: any free one)"
    )
    p.add_argument(
        "--steps",
        type=STEPS.arg("--steps"),
        default=DEFAULT_STEPS,
        help=f"MaskGIT steps per frame each tab starts with, {STEPS.describe()} "
        f"(default {DEFAULT_STEPS})",
    )
    p.add_argument(
        "--temperature",
        type=TEMPERATURE.arg("--temperature"),
        help=f"initial temperature, {TEMPERATURE.describe()} (default: the world's)",
    )
    p.add_argument(
        "--guidance",
        type=GUIDANCE.arg("--guidance"),
        help=f"initial action guidance, {GUIDANCE.describe()}: logits(key) + w (logits(key) - "
        "logits(standing still)), so a held key moves the world further (default: the world's)",
    )
    p.add_argument(
        "--context-mask",
        type=CONTEXT_MASK.arg("--context-mask"),
        help=f"share of each earlier frame's tokens hidden from the dynamics model, as its "
        f"training hides them, {CONTEXT_MASK.describe()} (default: the world's)",
    )
    p.add_argument(
        "--min-p",
        type=MIN_P.arg("--min-p"),
        help=f"min-p sampling: drop each token's codes less likely than this share of its "
        f"likeliest, so a still scene drifts less; {MIN_P.describe()}, 0 for none "
        "(default: the world's)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="dynamics model precision; auto (default): bf16 where a short matmul test finds "
        "it faster (~1.5x the frames/s on CPUs with native bf16), else fp32, which gives "
        "exactly the frames recomputing gives",
    )
    p.add_argument(
        "--threads",
        type=at_least(1).arg("--threads"),
        default=1,
        help="torch threads per step (default 1)",
    )
    p.add_argument(
        "--workers",
        type=at_least(1).arg("--workers"),
        default=2,
        help="tabs stepping at once (default 2)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=UPLOAD_MB.arg("--max-upload-mb"),
        default=10.0,
        help=f"largest upload, {UPLOAD_MB.describe()} (default 10)",
    )
    p.add_argument(
        "--max-sessions",
        type=at_least(1).arg("--max-sessions"),
        default=16,
        help="most tabs at once (default 16)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.add_argument("--no-browser", action="store_true", help="only print the URL")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from opengenie.imageio import load_prompt
    from opengenie.models import World
    from opengenie.models.world import world_prompt
    from opengenie.play.server import PlayOptions, PlayServer, default_prompt

    torch.set_flush_denormal(True)  # denormals made CPU steps several times slower here
    world = World.load(args.world, device=args.device)
    if resolve_precision(args.precision, args.device) == "bf16":
        world.set_dynamics_dtype(torch.bfloat16)
    prompt_path = args.prompt or world_prompt(args.world)  # a world may ship its start frame
    if prompt_path is not None:
        prompt = load_prompt(prompt_path, world.config.image_size)
    else:
        prompt = default_prompt(world)
    options = PlayOptions(
        steps=args.steps,
        temperature=world.sampling.temperature if args.temperature is None else args.temperature,
        mode=world.sampling.mode,
        guidance=world.sampling.guidance if args.guidance is None else args.guidance,
        context_mask=args.context_mask,
        min_p=args.min_p,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_sessions=args.max_sessions,
        threads=args.threads,
        workers=args.workers,
        world_name=Path(args.world).name if args.world else "shipped CoinRun world",
    )
    if options.guidance:
        world.guidance_reference()  # a one-line error now, not at the first key press
    server = PlayServer(world, prompt, options)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        asyncio.run(_serve(server, args.host, args.port, not args.no_browser))
    except KeyboardInterrupt:
        print("stopped", flush=True)
    return 0


async def _serve(server, host: str, port: int, open_browser: bool) -> None:
    from aiohttp import web

    runner = web.AppRunner(server.app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise UserError(f"cannot listen on {host}:{port} ({error.strerror}): try --port") from None
    bound = runner.addresses[0][1] if runner.addresses else port  # the real port for --port 0
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{bound}/"
    print(f"playing {server.options.world_name} at {url}  (Ctrl-C to stop)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {host} without authentication", flush=True)
    if open_browser:
        threading.Thread(target=_open_browser, args=(url,), daemon=True).start()
    try:
        await asyncio.Event().wait()  # serve until interrupted
    finally:
        await runner.cleanup()


def _open_browser(url: str) -> None:
    """Open the page when a graphical browser is likely; never fail, never take the terminal
    (on a Linux box without a display, webbrowser would fall back to a text browser)."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return
    with contextlib.suppress(Exception):  # no browser: the printed URL is enough
        webbrowser.open(url, new=2)
