"""The play server's websocket under fuzzed messages (issue 17): whatever a tab sends, valid or
not, it gets a frame, its settings or one error message, never an internal error, and the tab
keeps playing afterwards. Messages come from a property-based generator (Hypothesis)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from opengenie.models import World
from opengenie.play.server import PlayOptions, PlayServer

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
KINDS = st.sampled_from(["step", "reset", "settings"]) | st.text(max_size=8) | JSON
FIELDS = st.sampled_from(["action", "seed", "steps", "temperature", "mode"]) | st.text(max_size=6)
COMMANDS = st.builds(
    lambda kind, extra: {"type": kind, **extra},
    KINDS,
    st.dictionaries(FIELDS, JSON | st.integers(-3, 12) | st.sampled_from(["random", "argmax"])),
)
MESSAGES = st.one_of(
    COMMANDS.map(lambda m: ("text", json.dumps(m))),  # NaN/Infinity stay as JSON extensions
    JSON.map(lambda v: ("text", json.dumps(v))),  # JSON that is no command object
    st.text(max_size=40).map(lambda t: ("text", t)),  # not JSON at all
    st.binary(max_size=200).map(lambda b: ("binary", b)),  # uploads that are no image
)


@pytest.fixture(scope="module")
def fuzz_world():
    from opengenie.config import preset

    from .conftest import SMALL_MODEL

    torch.manual_seed(0)
    return World(preset("tiny", [*SMALL_MODEL, "dynamics.depth=2", "frames=6"]))


async def _reply(ws) -> tuple[str, object]:
    msg = await ws.receive(timeout=60)
    if msg.type == WSMsgType.BINARY:
        return "frame", None
    assert msg.type == WSMsgType.TEXT, f"the tab was closed: {msg.type} {msg.data!r}"
    return "json", json.loads(msg.data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(MESSAGES, min_size=1, max_size=6))
def test_fuzzed_websocket_messages_get_an_answer_and_the_tab_keeps_playing(fuzz_world, messages):
    prompt = np.zeros((32, 32, 3), np.uint8)
    server = PlayServer(fuzz_world, prompt, PlayOptions(steps=1))

    async def run() -> None:
        async with TestClient(TestServer(server.app())) as client:
            ws = await client.ws_connect("/ws")
            assert (await _reply(ws))[1]["type"] == "info"
            assert (await _reply(ws))[0] == "frame"  # the prompt
            for kind, payload in messages:
                await (ws.send_str(payload) if kind == "text" else ws.send_bytes(payload))
                got, body = await _reply(ws)
                if got == "json":
                    assert body["type"] in ("settings", "error"), body
                    assert "internal error" not in body.get("message", ""), (payload, body)
                    event(f"answer: {body['type']}")
                else:
                    event("answer: frame")
            # Whatever came before, the tab still plays: a plain step gives a frame.
            await ws.send_json({"type": "settings", "steps": 1})
            assert (await _reply(ws))[1]["type"] == "settings"
            await ws.send_json({"type": "step", "action": 0})
            assert (await _reply(ws))[0] == "frame"
            await ws.close()

    asyncio.run(run())
