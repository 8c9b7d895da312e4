"""The play server: an aiohttp app that serves one static page and streams frames over a websocket.

Each websocket (one browser tab) gets its own `PlaySession` (own caches, RNG and sampling
settings); the World's weights are shared. Inference runs in a thread pool so one tab's step
never blocks the event loop for the others, and a per-session lock keeps one tab's steps in
order. Closing the tab closes its websocket and drops the session, freeing its caches.

Protocol (all client messages are JSON text, except an uploaded prompt, which is the raw bytes
of an image file sent as one binary message):

    client -> server  {"type": "step", "action": 3}
                      {"type": "reset", "seed": 7}            (seed optional)
                      {"type": "settings", "steps": 8, "temperature": 1.0, "mode": "random"}
                      <binary: image file bytes>               (new prompt, then reset)
    server -> client  {"type": "info", ...}                    (once, on connect)
                      {"type": "settings", ...} / {"type": "error", "message": ...}
                      <binary: frame>  = uint32 LE n, n bytes of JSON metadata, H*W*3 RGB bytes
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import torch
from aiohttp import WSMsgType, web

from opengenie.config import PLAY_STEPS
from opengenie.errors import UserError
from opengenie.imageio import load_prompt
from opengenie.models.world import PlaySession, World
from opengenie.options import GUIDANCE, SEED, STEPS, TEMPERATURE
from opengenie.play.memory import release_freed_memory

log = logging.getLogger("opengenie.play")

# The page's files, read once from package data; requests only ever pick from this table by
# name, so nothing a request sends becomes a file-system path.
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
STATIC_FILES = ("index.html", "play.js", "play.css")

# A tab's settings follow the same rules as the CLI's --steps/--temperature (opengenie.options).
MAX_STEPS = STEPS.high  # MaskGIT steps a tab may ask for (more only makes it slower)
TEMPERATURE_RANGE = (TEMPERATURE.low, TEMPERATURE.high)


def _call_once(call: list) -> Any:
    """Run the one call in `call`, emptying it first: a pool thread may hold its work item a
    while after the result is back, and that item then no longer keeps a session alive."""
    fn, args = call.pop()
    return fn(*args)


@dataclass
class PlayOptions:
    """Server-wide settings; each tab starts from `steps`/`temperature`/`mode`/`guidance`
    and may change its own copy (not `context_mask` and `min_p`: the same for every tab)."""

    steps: int = PLAY_STEPS
    temperature: float = 1.0
    mode: str = "random"
    guidance: float = 0.0  # action guidance against standing still (maskgit.guided)
    # Share of earlier frames' tokens hidden (Dynamics.hide_context); None: the world's own.
    context_mask: float | None = None
    min_p: float | None = None  # min-p truncation (maskgit_fill); None: the world's own
    max_upload_bytes: int = 10 * 1024 * 1024
    max_sessions: int = 16
    threads: int = 1  # torch intra-op threads per inference worker
    workers: int = 2  # inference threads (tabs stepping at the same time)
    world_name: str = "world"


@dataclass
class Player:
    """One tab: its session, the prompt it resets to, and a lock that orders its steps."""

    session: PlaySession
    prompt: np.ndarray
    ws: web.WebSocketResponse
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_step_s: float = 0.0


def _worker_init(threads: int) -> None:
    # Both are per-thread state: the FTZ/DAZ flags live in each thread's MXCSR register
    # (denormals made CPU steps several times slower here), so set them in every worker.
    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)


def default_prompt(world: World) -> np.ndarray:
    """A neutral grey frame, used when no --prompt is given and the world ships none."""
    size = world.config.image_size
    return np.full((size, size, 3), 128, dtype=np.uint8)


def action_table(world: World) -> dict[str, Any]:
    """What the page needs to label actions and map arrow keys: names per id (from the world's
    action_map.json when present) and the ids of 'left', 'right', 'jump', combos and 'none'."""
    n = world.num_actions
    amap = world.action_map or {}
    names_in = amap.get("names", {}) if isinstance(amap, dict) else {}
    keys_in = amap.get("keys", {}) if isinstance(amap, dict) else {}
    names = [str(names_in.get(str(i), "")) if isinstance(names_in, dict) else "" for i in range(n)]
    keys = {}
    if isinstance(keys_in, dict):
        for name, value in keys_in.items():
            # Ignore entries that are not valid ids rather than failing to serve the world.
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n:
                keys[str(name)] = value
    return {"names": names, "keys": keys}


def encode_frame(frame: np.ndarray, meta: dict[str, Any]) -> bytes:
    """One binary websocket message: uint32 LE JSON length, JSON metadata, RGB bytes."""
    header = json.dumps(meta).encode()
    return struct.pack("<I", len(header)) + header + np.ascontiguousarray(frame).tobytes()


def decode_upload(data: bytes, size: int, max_bytes: int) -> np.ndarray:
    """An uploaded image file -> (size, size, 3) uint8, or a UserError saying why not."""
    if len(data) > max_bytes:
        raise UserError(f"image too large ({len(data) / 1e6:.1f} MB; limit {max_bytes / 1e6:g} MB)")
    if not data:
        raise UserError("empty upload: choose an image file")
    return load_prompt(io.BytesIO(data), size)  # one UserError for any unreadable image


class PlayServer:
    """Holds the World, the thread pool and the live players; builds the aiohttp app."""

    def __init__(self, world: World, prompt: np.ndarray, options: PlayOptions) -> None:
        self.world = world
        self.prompt = prompt
        self.options = options
        self.players: dict[int, Player] = {}
        self._next_id = 0
        self.executor = ThreadPoolExecutor(
            max_workers=options.workers,
            thread_name_prefix="opengenie-play",
            initializer=_worker_init,
            initargs=(options.threads,),
        )
        self.static = {
            name: resources.files("opengenie.play").joinpath("static", name).read_bytes()
            for name in STATIC_FILES
        }

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)  # no large HTTP bodies: uploads use ws
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.static_file)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/status", self.status)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    # -- HTTP ----------------------------------------------------------------------------
    async def index(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.static["index.html"], content_type="text/html")

    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.static:  # a fixed table, never a path lookup
            raise web.HTTPNotFound()
        suffix = name[name.rfind(".") :]
        return web.Response(body=self.static[name], content_type=STATIC_TYPES[suffix])

    async def status(self, _request: web.Request) -> web.Response:
        return web.json_response({"sessions": len(self.players), "world": self.options.world_name})

    # -- websocket -----------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        # A message over the limit closes the socket with code 1009 (the page reports it and
        # reconnects); the page also checks the size before sending.
        ws = web.WebSocketResponse(
            max_msg_size=self.options.max_upload_bytes + 1024, heartbeat=30, compress=False
        )
        await ws.prepare(request)
        if len(self.players) >= self.options.max_sessions:
            await ws.send_json(
                {"type": "error", "fatal": True, "message": "too many players: close a tab"}
            )
            await ws.close()
            return ws
        player_id = self._next_id
        self._next_id += 1
        session = self.new_session()
        player = Player(session, self.prompt, ws)
        self.players[player_id] = player
        log.info("player %d joined (%d playing)", player_id, len(self.players))
        try:
            await ws.send_json(self._info(player))
            await self._reset(ws, player, seed=None)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._handle_text(ws, player, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self._handle_upload(ws, player, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    log.info("player %d: websocket error %s", player_id, ws.exception())
        except ConnectionResetError:  # the tab went away mid-send
            pass
        finally:
            # Dropping the last reference frees the session's caches; then the freed pages go
            # back to the OS, so memory does not stay at its peak after players leave.
            self.players.pop(player_id, None)
            player = session = None
            release_freed_memory()
            log.info("player %d left (%d playing)", player_id, len(self.players))
        return ws

    def new_session(self) -> PlaySession:
        """A tab's own session of the world, at the server's settings."""
        session = self.world.new_session()
        session.sampling.steps = self.options.steps
        session.sampling.temperature = self.options.temperature
        session.sampling.mode = self.options.mode
        session.sampling.guidance = self.options.guidance
        if self.options.context_mask is not None:
            session.sampling.context_mask = self.options.context_mask
        if self.options.min_p is not None:
            session.sampling.min_p = self.options.min_p
        return session

    def _info(self, player: Player) -> dict[str, Any]:
        s, cfg = player.session.sampling, self.world.config
        return {
            "type": "info",
            "world": self.options.world_name,
            "num_actions": self.world.num_actions,
            "actions": action_table(self.world),
            "image_size": cfg.image_size,
            "window": cfg.frames,
            "fps_trained": cfg.fps,
            "frame_skip": cfg.frame_skip,  # game frames per world step
            "context_mask": s.context_mask,  # the same for every tab
            "min_p": s.min_p,  # the same for every tab
            "settings": {
                "steps": s.steps,
                "temperature": s.temperature,
                "mode": s.mode,
                "guidance": s.guidance,
            },
            "max_steps": MAX_STEPS,
            "temperature_range": list(TEMPERATURE_RANGE),
            "max_upload_bytes": self.options.max_upload_bytes,
            "dynamics_dtype": str(self.world.dynamics_dtype).replace("torch.", ""),
        }

    async def _send_error(self, ws: web.WebSocketResponse, message: str) -> None:
        if not ws.closed:
            await ws.send_json({"type": "error", "message": message})

    async def _run(self, player: Player, fn, *args):
        """Run `fn(*args)` in the inference pool, one call per player at a time."""
        loop = asyncio.get_running_loop()
        async with player.lock:
            start = time.perf_counter()
            result = await loop.run_in_executor(self.executor, _call_once, [(fn, args)])
            player.last_step_s = time.perf_counter() - start
            return result

    async def _send_frame(
        self, ws: web.WebSocketResponse, player: Player, frame: np.ndarray, action: int | None
    ) -> None:
        s = player.session
        meta = {
            "action": action,
            "frame": s.frames - 1,  # 0 = the prompt
            "ms": round(player.last_step_s * 1000, 1),
            "steps": s.sampling.steps,
            "temperature": s.sampling.temperature,
            "mode": s.sampling.mode,
            "guidance": s.sampling.guidance,
            "height": int(frame.shape[0]),
            "width": int(frame.shape[1]),
        }
        if not ws.closed:
            await ws.send_bytes(encode_frame(frame, meta))

    async def _reset(self, ws: web.WebSocketResponse, player: Player, seed: int | None) -> None:
        frame = await self._run(player, player.session.reset, player.prompt, seed)
        await self._send_frame(ws, player, frame, None)

    async def _handle_text(self, ws: web.WebSocketResponse, player: Player, data: str) -> None:
        try:
            message = json.loads(data)
            if not isinstance(message, dict):
                raise ValueError
        except ValueError:
            await self._send_error(ws, "bad message (expected a JSON object)")
            return
        kind = message.get("type")
        try:
            if kind == "step":
                action = message.get("action")
                n = self.world.num_actions
                if not isinstance(action, int) or isinstance(action, bool) or not 0 <= action < n:
                    raise UserError(f"unknown action {action!r}: use an id in 0..{n - 1}")
                frame = await self._run(player, player.session.step, action)
                await self._send_frame(ws, player, frame, action)
            elif kind == "reset":
                seed = message.get("seed")
                if seed is not None:
                    SEED.check(seed, "seed")
                await self._reset(ws, player, seed)
            elif kind == "settings":
                await ws.send_json(self._apply_settings(player, message))
            else:
                raise UserError(f"unknown message type {kind!r}")
        except UserError as error:
            await self._send_error(ws, str(error))
        except Exception:  # never let one bad request end the server or the tab
            log.error("step failed:\n%s", traceback.format_exc())
            await self._send_error(ws, "internal error (see the server's log)")

    def _apply_settings(self, player: Player, message: dict[str, Any]) -> dict[str, Any]:
        """Validate everything first, then apply: a bad value changes nothing."""
        s = player.session.sampling
        steps, temperature, mode, guidance = s.steps, s.temperature, s.mode, s.guidance
        if "steps" in message:
            steps = STEPS.check(message["steps"], "steps")
        if "temperature" in message:
            temperature = TEMPERATURE.check(message["temperature"], "temperature")
        if "mode" in message:
            mode = message["mode"]
            if mode not in ("random", "argmax"):
                raise UserError("mode must be 'random' or 'argmax'")
        if "guidance" in message:
            guidance = GUIDANCE.check(message["guidance"], "guidance")
            if guidance and self.world.still_action() is None:
                raise UserError("this world does not know which action stands still: no guidance")
        s.steps, s.temperature, s.mode = steps, float(temperature), mode
        s.guidance = float(guidance)
        return {
            "type": "settings",
            "steps": s.steps,
            "temperature": s.temperature,
            "mode": mode,
            "guidance": s.guidance,
        }

    async def _handle_upload(self, ws: web.WebSocketResponse, player: Player, data: bytes) -> None:
        size = self.world.config.image_size
        loop = asyncio.get_running_loop()
        try:
            # Decoding a large image takes a while: off the event loop, like inference.
            prompt = await loop.run_in_executor(
                self.executor, decode_upload, data, size, self.options.max_upload_bytes
            )
        except UserError as error:
            await self._send_error(ws, f"upload refused: {error}")
            return
        except Exception:  # a decoder bug on a hostile file must not end the server
            log.error("upload failed:\n%s", traceback.format_exc())
            await self._send_error(ws, "upload refused: cannot read this image")
            return
        player.prompt = prompt
        await self._reset(ws, player, seed=None)

    async def _on_shutdown(self, _app: web.Application) -> None:
        for player in list(self.players.values()):
            await player.ws.close(code=1001, message=b"server shutting down")

    async def _on_cleanup(self, _app: web.Application) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
