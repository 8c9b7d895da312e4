"""`opengenie play` without a browser: the websocket protocol, per-tab sessions and settings,
uploads, freeing sessions, a non-blocking event loop, the CLI and `bench play`.

The browser itself is driven in tests/test_play_browser.py.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import urllib.request
import weakref
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from opengenie.cli import main
from opengenie.errors import UserError
from opengenie.models import World
from opengenie.play.server import (
    PlayOptions,
    PlayServer,
    action_table,
    decode_upload,
    encode_frame,
)

from .conftest import count_step_logits, sigint_default

ACTION_MAP = {
    "names": {"0": "right", "1": "none", "3": "left+jump", "4": "left", "5": "jump"},
    "keys": {"left": 4, "right": 0, "jump": 5, "none": 1, "left+jump": 3},
}


@pytest.fixture
def world(small_config):
    torch.manual_seed(0)
    w = World(small_config)
    w.action_map = ACTION_MAP
    return w


def _prompt(size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _png(width: int, height: int, seed: int = 1) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file that claims `width` x `height` pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def _parse_frame(data: bytes) -> tuple[dict, np.ndarray]:
    n = struct.unpack("<I", data[:4])[0]
    meta = json.loads(data[4 : 4 + n])
    pixels = np.frombuffer(data[4 + n :], dtype=np.uint8)
    return meta, pixels.reshape(meta["height"], meta["width"], 3)


async def _frame(ws) -> tuple[dict, np.ndarray]:
    msg = await ws.receive(timeout=60)
    assert msg.type == WSMsgType.BINARY, f"expected a frame, got {msg.type} {msg.data!r}"
    return _parse_frame(msg.data)


async def _json(ws) -> dict:
    msg = await ws.receive(timeout=60)
    assert msg.type == WSMsgType.TEXT, f"expected JSON, got {msg.type}"
    return json.loads(msg.data)


def _serve(world: World, test, prompt: np.ndarray | None = None, **options) -> None:
    """Run `await test(client, server)` against a live PlayServer on a free local port."""
    options.setdefault("steps", 2)
    server = PlayServer(world, _prompt() if prompt is None else prompt, PlayOptions(**options))

    async def run() -> None:
        async with TestClient(TestServer(server.app())) as client:
            await test(client, server)

    asyncio.run(run())


# -- pure helpers ---------------------------------------------------------------------------


def test_action_table_maps_names_and_keys_and_ignores_bad_entries(world):
    world.action_map = {
        "names": {"0": "right", "4": "left", "99": "ghost"},
        "keys": {"left": 4, "right": 0, "jump": 99, "none": "1", "flag": True},
    }
    table = action_table(world)
    assert table["names"][0] == "right" and table["names"][4] == "left"
    assert len(table["names"]) == world.num_actions and table["names"][1] == ""
    assert table["keys"] == {"left": 4, "right": 0}  # out-of-range, non-int and bool dropped
    world.action_map = None
    assert action_table(world) == {"names": [""] * world.num_actions, "keys": {}}


def test_release_freed_memory_runs_where_glibc_is():
    import platform

    from opengenie.play.memory import release_freed_memory

    ran = release_freed_memory()
    assert ran is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


def test_encode_frame_round_trips():
    frame = _prompt(5)
    meta, pixels = _parse_frame(encode_frame(frame, {"action": 3, "height": 5, "width": 5}))
    assert meta["action"] == 3 and np.array_equal(pixels, frame)


def test_decode_upload_accepts_any_size_and_refuses_bad_files():
    out = decode_upload(_png(100, 40), 32, max_bytes=1 << 20)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    with pytest.raises(UserError, match="too large"):
        decode_upload(b"x" * 2048, 32, max_bytes=1024)
    with pytest.raises(UserError, match="empty"):
        decode_upload(b"", 32, max_bytes=1024)
    with pytest.raises(UserError, match="not a readable image"):
        decode_upload(b"GIF89a this is not really an image", 32, max_bytes=1 << 20)
    # Headers claiming 81 and 400 Mpixel: refused before any pixel is decoded.
    with pytest.raises(UserError, match="too large"):
        decode_upload(_png_header_only(9000, 9000), 32, max_bytes=1 << 20)
    with pytest.raises(UserError, match="too many pixels|too large"):
        decode_upload(_png_header_only(20000, 20000), 32, max_bytes=1 << 20)


# -- the server -----------------------------------------------------------------------------


def test_page_and_static_files_are_served_and_nothing_else(world):
    async def test(client, _server):
        page = await client.get("/")
        html = await page.text()
        assert page.status == 200 and '<canvas id="screen"' in html
        css = await (await client.get("/static/play.css")).text()
        assert "image-rendering: pixelated" in css  # crisp upscaled pixels
        js = await client.get("/static/play.js")
        assert js.status == 200 and js.content_type == "text/javascript"
        for path in ("/static/server.py", "/static/..%2Fserver.py", "/static/%2Fetc%2Fpasswd"):
            assert (await client.get(path)).status == 404
        status = await (await client.get("/status")).json()
        assert status["sessions"] == 0

    _serve(world, test)


def test_websocket_info_reset_step_and_errors(world):
    async def test(client, _server):
        ws = await client.ws_connect("/ws")
        info = await _json(ws)
        assert info["type"] == "info" and info["num_actions"] == world.num_actions
        assert info["frame_skip"] == world.config.frame_skip
        assert info["actions"]["keys"]["left"] == 4 and info["actions"]["names"][0] == "right"
        assert info["settings"] == {
            "steps": 2,
            "temperature": 1.0,
            "mode": "random",
            "guidance": 0.0,
        }
        meta, frame = await _frame(ws)
        assert meta["frame"] == 0 and meta["action"] is None and frame.shape == (32, 32, 3)
        await ws.send_json({"type": "step", "action": 3})
        meta, _ = await _frame(ws)
        assert meta["frame"] == 1 and meta["action"] == 3 and meta["steps"] == 2
        # Bad requests get a message and leave the tab playing.
        for bad, expected in (
            ({"type": "step", "action": world.num_actions}, "unknown action"),
            ({"type": "step", "action": "1"}, "unknown action"),
            ({"type": "step", "action": True}, "unknown action"),
            ({"type": "settings", "steps": 0}, "steps must be"),
            ({"type": "settings", "temperature": -1}, "temperature must be"),
            ({"type": "settings", "mode": "beam"}, "mode must be"),
            ({"type": "settings", "guidance": -0.5}, "guidance must be"),
            ({"type": "reset", "seed": -3}, "seed"),
            ({"type": "teleport"}, "unknown message type"),
        ):
            await ws.send_json(bad)
            reply = await _json(ws)
            assert reply["type"] == "error" and expected in reply["message"], (bad, reply)
        await ws.send_str("{not json")
        assert "bad message" in (await _json(ws))["message"]
        await ws.send_json({"type": "step", "action": 0})
        meta, _ = await _frame(ws)
        assert meta["frame"] == 2  # still playing after all that
        await ws.close()

    _serve(world, test)


def test_settings_take_effect_per_tab_and_seeds_reproduce(world):
    calls = count_step_logits(world)

    async def test(client, _server):
        a, b = await client.ws_connect("/ws"), await client.ws_connect("/ws")
        for ws in (a, b):
            await _json(ws)
            await _frame(ws)
        await a.send_json({"type": "settings", "steps": 5, "temperature": 0.5, "mode": "argmax"})
        assert await _json(a) == {
            "type": "settings",
            "steps": 5,
            "temperature": 0.5,
            "mode": "argmax",
            "guidance": 0.0,
        }
        calls["n"] = 0
        await a.send_json({"type": "step", "action": 1})
        meta, _ = await _frame(a)
        assert calls["n"] == 5 + 1 and meta["steps"] == 5 and meta["mode"] == "argmax"
        calls["n"] = 0
        await b.send_json({"type": "step", "action": 1})  # the other tab kept its own settings
        meta, _ = await _frame(b)
        assert calls["n"] == 2 + 1 and meta["steps"] == 2 and meta["temperature"] == 1.0
        # Guidance: each MaskGIT step also asks for the still action's logits.
        await a.send_json({"type": "settings", "guidance": 0.5})
        assert (await _json(a))["guidance"] == 0.5
        calls["n"] = 0
        await a.send_json({"type": "step", "action": 0})  # not the still action (1)
        meta, _ = await _frame(a)
        assert calls["n"] == 2 * 5 + 1 and meta["guidance"] == 0.5

        # A seeded reset in a tab replays exactly what a fresh session gives.
        await b.send_json({"type": "reset", "seed": 11})
        got = [(await _frame(b))[1]]
        for action in (0, 2, 5):
            await b.send_json({"type": "step", "action": action})
            got.append((await _frame(b))[1])
        alone = world.new_session()
        alone.sampling.steps = 2
        expected = [alone.reset(_prompt(), seed=11)] + [alone.step(x) for x in (0, 2, 5)]
        assert all(np.array_equal(x, y) for x, y in zip(got, expected, strict=True))
        assert not np.array_equal(got[1], got[2])  # frames change as the world steps

    _serve(world, test)


def test_uploads_reset_to_the_new_prompt_and_bad_ones_get_a_message(world):
    async def test(client, server):
        ws = await client.ws_connect("/ws")
        await _json(ws)
        await _frame(ws)
        png = _png(90, 50)
        await ws.send_bytes(png)
        meta, frame = await _frame(ws)
        expected = world.new_session().reset(decode_upload(png, 32, 1 << 20))
        assert meta["frame"] == 0 and np.array_equal(frame, expected)
        for data, text in (
            (b"not an image at all", "not a readable image"),
            (_png_header_only(9000, 9000), "too large"),
            (b"\x89PNG" + b"\x00" * 20_500, "too large"),  # over max_upload_bytes
        ):
            await ws.send_bytes(data)
            reply = await _json(ws)
            assert reply["type"] == "error" and "upload refused" in reply["message"], reply
            assert text in reply["message"]
        # Far over the websocket's message limit: that tab's socket is closed (the page then
        # says so and reconnects); the server itself goes on serving.
        await ws.send_bytes(b"\x00" * (server.options.max_upload_bytes + 100_000))
        msg = await ws.receive(timeout=30)
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        again = await client.ws_connect("/ws")
        assert (await _json(again))["type"] == "info"
        await _frame(again)

    _serve(world, test, max_upload_bytes=20_000)


def test_closed_tabs_free_their_sessions_and_sessions_are_capped(world, monkeypatch):
    made: list[weakref.ref] = []
    original = world.new_session
    # When a tab leaves, its session is already gone by the time freed memory is handed back.
    gone_at_release: list[bool] = []

    def release() -> bool:
        gone_at_release.append(made[0]() is None)
        return True

    monkeypatch.setattr("opengenie.play.server.release_freed_memory", release)

    def tracking():
        session = original()
        made.append(weakref.ref(session))
        return session

    world.new_session = tracking

    async def status(client) -> int:
        return (await (await client.get("/status")).json())["sessions"]

    async def test(client, _server):
        a, b = await client.ws_connect("/ws"), await client.ws_connect("/ws")
        for ws in (a, b):
            await _json(ws)
            await _frame(ws)
        assert await status(client) == 2
        c = await client.ws_connect("/ws")  # over --max-sessions 2
        reply = await _json(c)
        assert reply["type"] == "error" and reply.get("fatal") and "too many" in reply["message"]
        await a.close()
        for _ in range(100):  # the server notices the close asynchronously
            if await status(client) == 1:
                break
            await asyncio.sleep(0.05)
        assert await status(client) == 1
        assert gone_at_release == [True]  # freed by refcount before the pages were released
        gc.collect()
        assert made[0]() is None  # the closed tab's session (and its caches) is gone
        assert made[1]() is not None
        await b.close()

    _serve(world, test, max_sessions=2)


def test_a_long_step_does_not_block_other_tabs(world):
    """Inference runs in a thread pool: while one tab's step is stuck, the page, the status
    endpoint and another tab's steps are still served."""
    gate = threading.Event()
    made = []
    original = world.new_session

    def gated():
        session = original()
        made.append(session)
        if len(made) == 1:  # the first tab's steps wait for the gate
            step = session.step

            def slow(action):
                assert gate.wait(30)
                return step(action)

            session.step = slow
        return session

    world.new_session = gated

    async def test(client, _server):
        a = await client.ws_connect("/ws")
        await _json(a)
        await _frame(a)
        await a.send_json({"type": "step", "action": 0})  # stuck until the gate opens
        b = await client.ws_connect("/ws")
        await _json(b)
        await _frame(b)
        await b.send_json({"type": "step", "action": 1})
        meta, _ = await _frame(b)
        assert meta["frame"] == 1
        assert (await client.get("/")).status == 200
        assert not gate.is_set()  # all of the above happened while tab A's step was running
        gate.set()
        meta, _ = await _frame(a)
        assert meta["frame"] == 1 and meta["action"] == 0

    _serve(world, test)


def test_play_runs_far_past_the_window_with_bounded_caches(world):
    """64 frames with a 6-frame window: the caches keep window - 1 frames, positions go on.

    The tokenizer's decoder attends over its own temporal window (4 frames in the tiny preset),
    so its cache keeps 3.
    """
    session = world.new_session()
    session.sampling.steps = 2
    window = world.config.frames
    decoder_window = world.config.tokenizer.temporal_window
    assert 0 < decoder_window < window  # the preset's window is what this test exercises
    frames = [session.reset(_prompt(), seed=0)]
    frames += [session.step(i % world.num_actions) for i in range(63)]
    assert session.frames == 64 and all(f.shape == (32, 32, 3) for f in frames)
    assert session._dyn_cache.length == window - 1
    assert session._dec_cache.length == decoder_window - 1
    for cache in (session._dyn_cache, session._dec_cache):
        assert cache.next_pos == 64
    assert len({f.tobytes() for f in frames[-8:]}) > 1  # still moving, not stuck


# -- the command line -----------------------------------------------------------------------


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["play", "--world", str(tmp_path / "missing"), "--no-browser"]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["play", "--world", str(tmp_path), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["play", "--world", str(tmp_path), "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main(["play", "--world", str(tmp_path), "--guidance", "-1"]) == 2
    assert "--guidance" in capsys.readouterr().err
    assert main(["play", "--world", str(tmp_path), "--context-mask", "1"]) == 2
    assert "--context-mask" in capsys.readouterr().err
    assert main(["play", "--world", str(tmp_path), "--min-p", "1.5"]) == 2
    assert "--min-p" in capsys.readouterr().err


@pytest.mark.parametrize(
    "field, flag, own, given",
    [("context_mask", "--context-mask", 0.25, 0.5), ("min_p", "--min-p", 0.05, 0.2)],
)
def test_cli_server_wide_sampling_reaches_the_served_world(
    world, tmp_path, monkeypatch, field, flag, own, given
):
    """play --context-mask / --min-p overrides the world's config.json value; without it the
    world's own value stays, and the page is told which."""
    setattr(world.config.sampling, field, own)
    path = world.save(tmp_path / "w")
    served = {}

    async def fake_serve(server, *_args) -> None:
        session = server.new_session()  # what a tab plays with
        served["value"] = getattr(session.sampling, field)
        served["info"] = server._info(SimpleNamespace(session=session))

    monkeypatch.setattr("opengenie.play.cli._serve", fake_serve)
    assert main(["play", "--world", str(path), "--no-browser", flag, str(given)]) == 0
    assert served["value"] == given and served["info"][field] == given
    assert main(["play", "--world", str(path), "--no-browser"]) == 0
    assert served["value"] == own


def test_cli_guidance_needs_a_world_that_knows_standing_still(world, tmp_path, capsys):
    world.action_map = None
    path = world.save(tmp_path / "unpaired")
    assert main(["play", "--world", str(path), "--guidance", "1", "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert "stand still" in err and "Traceback" not in err


def test_server_guidance_option_is_each_tabs_start(world):
    calls = count_step_logits(world)

    async def test(client, _server):
        ws = await client.ws_connect("/ws")
        assert (await _json(ws))["settings"]["guidance"] == 0.75
        await _frame(ws)
        calls["n"] = 0
        await ws.send_json({"type": "step", "action": 0})
        meta, _ = await _frame(ws)
        assert meta["guidance"] == 0.75 and calls["n"] == 2 * 2 + 1

    _serve(world, test, guidance=0.75)


@pytest.fixture
def saved_world(world, tmp_path):
    return world.save(tmp_path / "world")


def _start_cli(args: list[str]) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "opengenie.cli", "play", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=sigint_default,
    )
    line = proc.stdout.readline()  # the first line names the URL
    if "http://" not in line:
        proc.kill()
        raise AssertionError(f"no URL printed: {line!r} {proc.stdout.read()!r}")
    return proc, line.split("http://")[1].split()[0].rstrip("/")


def test_cli_serves_the_page_and_stops_cleanly(saved_world, tmp_path):
    Image.fromarray(_prompt(48)).save(tmp_path / "p.png")
    proc, address = _start_cli(
        ["--world", str(saved_world), "--port", "0", "--prompt", str(tmp_path / "p.png")]
    )
    try:
        assert address.startswith("127.0.0.1:")  # local only by default
        with urllib.request.urlopen(f"http://{address}", timeout=30) as response:
            assert b"<canvas" in response.read()
        # A second server on the same port is refused with a one-line error.
        busy = subprocess.run(
            [sys.executable, "-m", "opengenie.cli", "play", "--no-browser"]
            + ["--world", str(saved_world), "--port", address.split(":")[1]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert busy.returncode == 2 and "cannot listen" in busy.stderr
        assert "Traceback" not in busy.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in out


def test_cli_bad_prompt_is_one_line(saved_world, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert main(["play", "--world", str(saved_world), "--prompt", str(tmp_path / "bad.png")]) == 2
    assert "cannot read prompt image" in capsys.readouterr().err


def test_bench_play_writes_its_figures(saved_world, tmp_path):
    out = tmp_path / "play.json"
    args = ["bench", "play", "--world", str(saved_world), "--out", str(out)]
    assert main([*args, "--frames", "2", "--rounds", "1", "--steps", "2", "--sweep", "1,2"]) == 0
    report = json.loads(out.read_text())
    assert report["play_defaults"]["steps"] == 2
    named = {"default", "paper_steps", "default_fp32", "paper_steps_fp32"}
    assert set(report["settings"]) == named | {"steps_1"}  # sweep point 2 is the default's
    assert [r["steps"] for r in report["quality_speed"]] == [1, 2]
    assert (
        report["quality_speed"][1]["frames_per_s"] == report["settings"]["default"]["frames_per_s"]
    )
    assert report["settings"]["steps_1"]["steps"] == 1
    assert report["summary"]["default_over_8_steps"] is None  # 8 was not in the sweep
    assert report["settings"]["paper_steps"]["steps"] == 25
    assert all(v["frames_per_s"] > 0 for v in report["settings"].values())
    speedup = report["cache_speedup"]["default"]
    assert speedup["speedup"] > 0 and speedup["recomputed_frames_per_s"] > 0
    assert report["delta_psnr_at_play_defaults"] is None  # no eval of this world was given


def _eval_metrics(tmp_path, delta: dict, extra: dict):
    """A metrics.json as `opengenie eval` writes it, with only the ΔtPSNR entries."""
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps({"dynamics": {"delta_t_psnr": delta, "delta_t_psnr_extra": [extra]}})
    )
    return metrics


def test_bench_play_puts_eval_delta_psnr_beside_the_speed(saved_world, tmp_path):
    delta = {"value": 3.4, "ci_low": 3.0, "ci_high": 3.7, "steps": 25, "temperature": 1.0}
    extra = {**delta, "value": 3.1, "steps": 2}
    metrics = _eval_metrics(tmp_path, delta, extra)
    out = tmp_path / "play.json"
    args = ["bench", "play", "--world", str(saved_world), "--out", str(out)]
    args += ["--eval-metrics", str(metrics), "--frames", "1", "--rounds", "1", "--steps", "2"]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["delta_psnr_at_play_defaults"]["value"] == 3.1
    assert report["delta_psnr_at_paper_steps"]["value"] == 3.4
    assert main([*args[:-2], "--steps", "3"]) == 0  # eval did not measure 3 steps
    assert json.loads(out.read_text())["delta_psnr_at_play_defaults"] is None


@pytest.mark.parametrize("field, value", [("context_mask", 0.5), ("min_p", 0.1)])
def test_bench_play_joins_eval_figures_measured_at_the_worlds_setting(
    world, tmp_path, field, value
):
    """A world played with sampling.context_mask (or min_p) gets eval's figures measured with
    the same value only: an entry measured at 0 (whole context; the whole softmax) is not its
    quality."""
    setattr(world.config.sampling, field, value)
    path = world.save(tmp_path / "sampling")
    delta = {"value": 3.4, "ci_low": 3.0, "ci_high": 3.7, "steps": 25, "temperature": 1.0}
    extra = {**delta, "value": 3.1, "steps": 2}
    out = tmp_path / "play.json"
    args = ["bench", "play", "--world", str(path), "--out", str(out), "--steps", "2"]
    args += ["--frames", "1", "--rounds", "1", "--sweep", "2"]
    for measured, joined in ((0.0, None), (value, 3.1)):
        entry = {**extra, field: measured}
        metrics = _eval_metrics(tmp_path, {**delta, field: measured}, entry)
        assert main([*args, "--eval-metrics", str(metrics)]) == 0
        report = json.loads(out.read_text())
        assert report["play_defaults"][field] == value
        found = report["delta_psnr_at_play_defaults"]
        assert (found and found["value"]) == joined


def test_bench_play_sweep_joins_eval_quality_per_steps(saved_world, tmp_path):
    """Each sweep row carries the ΔtPSNR and the control bars eval measured at its steps."""
    delta = {"value": 3.4, "ci_low": 3.0, "ci_high": 3.7, "steps": 25, "temperature": 1.0}
    delta["frame_psnr"] = 20.0
    extra = {**delta, "value": 3.1, "steps": 2, "frame_psnr": 19.0}
    control = {
        "settings": {"steps": 25, "temperature": 1.0},
        "bars": {"right_first_same_way": 0.6},
        "extra": [{"steps": 2, "temperature": 1.0, "bars": {"right_first_same_way": 0.9}}],
    }
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "dynamics": {"delta_t_psnr": delta, "delta_t_psnr_extra": [extra]},
                "control": control,
            }
        )
    )
    out = tmp_path / "play.json"
    args = ["bench", "play", "--world", str(saved_world), "--out", str(out), "--steps", "2"]
    args += ["--eval-metrics", str(metrics), "--frames", "1", "--rounds", "1", "--sweep", "1,2,25"]
    assert main(args) == 0
    rows = {r["steps"]: r for r in json.loads(out.read_text())["quality_speed"]}
    assert rows[2]["frame_psnr"] == 19.0 and rows[25]["frame_psnr"] == 20.0
    assert rows[2]["control_bars"]["right_first_same_way"] == 0.9
    assert rows[25]["control_bars"]["right_first_same_way"] == 0.6
    assert rows[1]["delta_t_psnr"] is None and rows[1]["control_bars"] is None
    summary = json.loads(out.read_text())["summary"]
    assert summary["meets_30_fps_target"] == (summary["default_frames_per_s"] >= 30)
    assert all(r["frames_per_s"] > 0 for r in rows.values())


def test_action_guidance_changes_a_held_keys_frames_and_leaves_standing_still_alone(world):
    """guidance w: logits(a) + w (logits(a) - logits(still)). With the same seed, a key other
    than standing still gives other frames than without guidance; standing still itself (the
    reference) gives the same tokens; a world without a still action refuses guidance."""
    from opengenie.errors import UserError

    still = world.still_action()
    assert still == ACTION_MAP["keys"]["none"]

    def tokens(action: int, guidance: float) -> list:
        session = world.new_session()
        session.sampling.steps, session.sampling.guidance = 2, guidance
        session.reset(_prompt(), seed=5)
        return [session.next_tokens(action).clone() for _ in range(3)]

    calls = count_step_logits(world)
    plain, pushed = tokens(0, 0.0), tokens(0, 2.0)
    calls["n"] = 0
    tokens(still, 2.0)
    assert calls["n"] == 1 + 3 * (2 + 1)  # the prompt, then 2 steps + a commit: no second pass
    assert any(not torch.equal(x, y) for x, y in zip(plain, pushed, strict=True))
    assert all(
        torch.equal(x, y) for x, y in zip(tokens(still, 0.0), tokens(still, 2.0), strict=True)
    )
    world.action_map = None  # an unpaired world trained without label codes
    session = world.new_session()
    session.sampling.guidance = 1.0
    session.reset(_prompt(), seed=5)
    with pytest.raises(UserError, match="stand still"):
        session.next_tokens(0)


def test_guided_logits_amplify_the_difference_from_the_reference():
    from opengenie.models.maskgit import guided

    base = torch.tensor([[[2.0, 0.0, -1.0]]])  # (B, N, V)
    ref = torch.tensor([[[1.0, 0.5, -1.0]]])
    fn = guided(lambda t: base, lambda t: ref, 1.5)
    assert torch.allclose(fn(torch.zeros(1, 1)), base + 1.5 * (base - ref))
    plain = lambda t: base  # noqa: E731
    assert guided(plain, lambda t: ref, 0.0) is plain  # weight 0: the paper's sampler, one pass


def test_bench_play_times_guidance_and_joins_eval_at_it(saved_world, tmp_path, capsys):
    """--guidance reaches every timed session and the recompute path, the unguided default is
    timed beside it, and eval's figures are joined only where eval used the same guidance."""
    delta = {"value": 1.4, "ci_low": 1.0, "ci_high": 1.8, "steps": 2, "temperature": 1.0}
    guided = {**delta, "value": 1.7, "guidance": 0.5}
    metrics = _eval_metrics(tmp_path, delta, guided)
    out = tmp_path / "play.json"
    args = ["bench", "play", "--world", str(saved_world), "--out", str(out), "--steps", "2"]
    args += ["--eval-metrics", str(metrics), "--frames", "1", "--rounds", "1", "--sweep", "2"]
    assert main([*args, "--guidance", "0.5"]) == 0
    report = json.loads(out.read_text())
    assert report["play_defaults"]["guidance"] == 0.5
    assert report["settings"]["default"]["guidance"] == 0.5
    assert report["settings"]["default_unguided"]["guidance"] == 0.0
    assert report["delta_psnr_at_play_defaults"]["value"] == 1.7  # eval's guided entry
    assert report["summary"]["unguided_over_guided"] > 0
    assert main(args) == 0  # the world's own guidance: none
    report = json.loads(out.read_text())
    assert "default_unguided" not in report["settings"]
    assert report["delta_psnr_at_play_defaults"]["value"] == 1.4
    unpaired = World.load(saved_world)
    unpaired.action_map = None
    path = unpaired.save(tmp_path / "unpaired")
    bad = ["bench", "play", "--world", str(path), "--out", str(out), "--guidance", "1"]
    assert main(bad) == 2 and "stand still" in capsys.readouterr().err
