"""`opengenie play` in a real browser: headless Chromium driven by Selenium (REFERENCE.md §3).

Loads the page, presses keys, watches the canvas change between frames, uploads prompts and
saves a screenshot. Needs Debian's `chromium` and `chromium-driver` and `pip install selenium`;
skipped, saying which is missing, without them.

The last tests hold → in the shipped world, as `make play` serves it, and compare the
canvas's scroll with the game's own from the same level start; and ← from a mid-level frame of
a test level (`play --prompt`), against the game from the same state.

Set OPENGENIE_PLAY_SCREENSHOT=path to also write the screenshot there (docs/play_screenshot.png
for the README) and OPENGENIE_PLAY_WORLD=dir to play that world instead of a random one.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from opengenie.models import World

from .conftest import sigint_default

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"

try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

_missing = [
    name
    for name, ok in (
        ("Debian package chromium", CHROMIUM is not None),
        (f"Debian package chromium-driver ({CHROMEDRIVER})", Path(CHROMEDRIVER).exists()),
        ("Python package selenium", HAVE_SELENIUM),
    )
    if not ok
]
pytestmark = pytest.mark.skipif(
    bool(_missing), reason=f"browser test needs {', '.join(_missing)} (see .ci/run)"
)

ACTION_MAP = {
    "names": {"0": "right", "1": "none", "2": "right+jump", "3": "left+jump", "4": "left"},
    "keys": {"left": 4, "right": 0, "jump": 5, "none": 1, "left+jump": 3, "right+jump": 2},
}
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,820",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, small_config_module):
    root = tmp_path_factory.mktemp("play")
    world_dir = os.environ.get("OPENGENIE_PLAY_WORLD")
    if not world_dir:
        torch.manual_seed(0)
        world = World(small_config_module)
        world.action_map = ACTION_MAP
        world_dir = str(world.save(root / "world"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "opengenie.cli", "play", "--world", world_dir, "--port", "0"]
        + ["--no-browser", "--max-upload-mb", "0.05"]
        + ([] if os.environ.get("OPENGENIE_PLAY_WORLD") else ["--steps", "4"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=sigint_default,
    )
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise AssertionError(f"play printed no URL: {line!r} {proc.stdout.read()!r}")
    url = "http://" + line.split("http://")[1].split()[0]
    yield url, root
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)


@pytest.fixture(scope="module")
def small_config_module():
    from opengenie.config import preset

    from .conftest import SMALL_MODEL

    # The conftest's small model (fast), as a module-scoped fixture for the shared server.
    return preset("tiny", [*SMALL_MODEL, "dynamics.depth=2", "frames=6"])


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")  # fresh profile
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, script: str, timeout: float = 60.0, what: str = ""):
    """Poll a JS expression until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        time.sleep(0.05)
    state = driver.execute_script(
        "return {frames: opengenie.frames, meta: opengenie.meta, "
        "message: document.getElementById('message').textContent};"
    )
    raise AssertionError(f"timed out waiting for {what or script}; page state {state}")


def _canvas(driver) -> str:
    return driver.execute_script("return document.getElementById('screen').toDataURL();")


def _status(url: str) -> int:
    import json
    import urllib.request

    with urllib.request.urlopen(url + "status", timeout=30) as response:
        return json.loads(response.read())["sessions"]


def test_play_in_headless_chromium(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, root = server
    browser.get(url)
    _wait(browser, "window.opengenie && opengenie.frames >= 1", what="the prompt frame")
    info = browser.execute_script("return opengenie.info;")
    keys = info["actions"]["keys"]
    legend = browser.find_element(By.ID, "legend").text
    custom = bool(os.environ.get("OPENGENIE_PLAY_WORLD"))  # not the test's own world
    assert f"latent action {info['num_actions'] - 1}" in legend and "reset" in legend
    if not custom:
        assert "latent action 0 (right)" in legend and "left → action 4" in legend
    assert browser.execute_script(
        "return getComputedStyle(document.getElementById('screen')).imageRendering;"
    ) in ("pixelated", "crisp-edges")
    first = _canvas(browser)
    canvas = browser.find_element(By.ID, "screen")
    canvas.click()

    # Key 2 -> latent action 1 (0-based underneath); the canvas changes.
    ActionChains(browser).send_keys("2").perform()
    _wait(browser, "opengenie.meta.frame === 1", what="frame 1")
    assert browser.execute_script("return opengenie.meta.action;") == 1
    assert browser.find_element(By.ID, "action").text.startswith("1")
    second = _canvas(browser)
    assert second != first

    # Arrows use the world's action_map: right, and left+jump as a held combo. (The test's
    # world has a full map; a world from OPENGENIE_PLAY_WORLD may have none.)
    arrows = "right" in keys and "left+jump" in keys
    if arrows or not custom:
        ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
        _wait(browser, "opengenie.meta.frame === 2", what="frame 2")
        assert browser.execute_script("return opengenie.meta.action;") == keys["right"]
        assert _canvas(browser) != second
        hold = ActionChains(browser).key_down(Keys.ARROW_LEFT).key_down(Keys.ARROW_UP)
        release = ActionChains(browser).key_up(Keys.ARROW_UP).key_up(Keys.ARROW_LEFT)
        hold.perform()
        _wait(browser, f"opengenie.meta.action === {keys['left+jump']}", what="left+jump")
    else:
        hold = ActionChains(browser).key_down("3")
        release = ActionChains(browser).key_up("3")
        hold.perform()

    # Holding keys keeps stepping; releasing them stops the world.
    start = browser.execute_script("return opengenie.frames;")
    _wait(browser, f"opengenie.frames >= {start + 3}", what="steps while a key is held")
    release.perform()
    time.sleep(0.5)  # let a step in flight land
    settled = browser.execute_script("return opengenie.frames;")
    time.sleep(0.7)
    assert browser.execute_script("return opengenie.frames;") == settled
    assert float(browser.find_element(By.ID, "ms").text) > 0

    # Auto-advance steps on its own (with the map's "none" action) until it is unticked.
    auto = browser.find_element(By.ID, "auto")
    auto.click()
    none = keys.get("none", "opengenie.lastAction")
    _wait(browser, f"opengenie.frames >= {settled + 3} && opengenie.meta.action === {none}")
    auto.click()
    time.sleep(0.5)
    stopped = browser.execute_script("return opengenie.frames;")
    time.sleep(0.5)
    assert browser.execute_script("return opengenie.frames;") == stopped

    # Per-tab settings: steps -> 2, applied on the next frame.
    steps = browser.find_element(By.ID, "steps")
    steps.send_keys(Keys.CONTROL, "a")  # replace the field's value, then leave the field
    steps.send_keys("2", Keys.TAB)
    _wait(browser, "opengenie.settings && opengenie.settings.steps === 2", what="settings")
    canvas.click()
    ActionChains(browser).send_keys("1").perform()
    _wait(browser, "opengenie.meta.steps === 2 && opengenie.meta.action === 0", what="2 steps")

    # Uploads: not an image, too large (checked in the page), then a real one.
    upload = browser.find_element(By.ID, "upload")
    junk = tmp_path / "notes.png"
    junk.write_bytes(b"this is not an image")
    upload.send_keys(str(junk))
    _wait(browser, "document.getElementById('message').textContent.includes('refused')")
    assert "not a readable image" in browser.find_element(By.ID, "message").text
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG" + os.urandom(80_000))  # over --max-upload-mb 0.05
    upload.send_keys(str(huge))
    _wait(browser, "document.getElementById('message').textContent.includes('limit')")
    pixels = np.zeros((60, 90, 3), np.uint8)
    pixels[:, :, 0] = 255  # a red prompt: easy to see it arrived
    good = tmp_path / "red.png"
    Image.fromarray(pixels).save(good)
    before = browser.execute_script("return opengenie.frames;")
    upload.send_keys(str(good))
    _wait(browser, f"opengenie.frames > {before} && opengenie.meta.frame === 0", what="reset")
    assert "new prompt loaded" in browser.find_element(By.ID, "message").text
    assert _status(url) == 1

    # A second tab gets its own session; closing it frees it.
    main_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(url)
    _wait(browser, "window.opengenie && opengenie.frames >= 1", what="second tab")
    assert _status(url) == 2
    browser.close()
    browser.switch_to.window(main_tab)
    deadline = time.monotonic() + 30
    while _status(url) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _status(url) == 1

    # For the picture, the world's own prompt again (when it has one) rather than the red one.
    world_prompt = Path(os.environ.get("OPENGENIE_PLAY_WORLD", root / "none")) / "prompt.png"
    if world_prompt.is_file():
        before = browser.execute_script("return opengenie.frames;")
        upload.send_keys(str(world_prompt.resolve()))
        _wait(browser, f"opengenie.frames > {before} && opengenie.meta.frame === 0", what="reset")

    # Back to the starting settings, hold a key and take the picture while the world plays
    # (the frame rate is live then).
    steps.send_keys(Keys.CONTROL, "a")
    steps.send_keys(str(info["settings"]["steps"]), Keys.TAB)
    _wait(browser, f"opengenie.settings.steps === {info['settings']['steps']}", what="steps")
    canvas.click()
    # Hold → where the world maps the arrows (a player walks right through a CoinRun level),
    # else key 1.
    held = Keys.ARROW_RIGHT if arrows else "1"
    ActionChains(browser).key_down(held).perform()
    _wait(browser, "opengenie.meta.frame >= 8 && opengenie.fps > 0", what="frames to show")
    browser.execute_script("window.scrollTo(0, 0);")
    time.sleep(1.0)  # the frame-rate display averages over the last second
    shot = tmp_path / "play.png"
    assert browser.save_screenshot(str(shot))
    ActionChains(browser).key_up(held).perform()
    image = Image.open(io.BytesIO(shot.read_bytes()))
    assert image.size[0] >= 600 and len(np.unique(np.asarray(image.convert("L")))) > 10
    target = os.environ.get("OPENGENIE_PLAY_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


def _serve_shipped(*args: str):
    """`opengenie play` on the shipped world at its settings, with extra arguments: yields the
    URL, then stops the server."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "opengenie.cli", "play", "--port", "0", "--no-browser", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        preexec_fn=sigint_default,
    )
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise AssertionError(f"play printed no URL: {line!r} {proc.stdout.read()!r}")
    yield "http://" + line.split("http://")[1].split()[0]
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)


@pytest.fixture(scope="module")
def shipped_server():
    """`opengenie play` as `make play` runs it: the shipped world, its prompt, its settings."""
    yield from _serve_shipped()


# ← needs room to the left: from a level's first frame the player stands at the level's left
# edge. Eval's mid-level start of a test level (run right, then stand still) gives it room.
LEFT_LEVEL = 200001


@pytest.fixture(scope="module")
def mid_level_start(tmp_path_factory):
    """Eval's mid-level start of LEFT_LEVEL: (its frame saved as a PNG, the game's saved state)."""
    pytest.importorskip("procgen", reason="needs procgen-mirror (pip install 'opengenie[coinrun]')")
    from opengenie.eval.held_keys import _env, _reach_mid

    env = _env(LEFT_LEVEL)
    assert _reach_mid(env)
    _, ob, _ = env.observe()
    path = tmp_path_factory.mktemp("prompt") / f"level{LEFT_LEVEL}_mid.png"
    Image.fromarray(ob["rgb"][0]).save(path)
    return path, env.callmethod("get_state")


@pytest.fixture(scope="module")
def shipped_server_mid_level(mid_level_start):
    """`make play`'s world and settings, prompted with a mid-level frame (--prompt)."""
    yield from _serve_shipped("--prompt", str(mid_level_start[0]))


def _canvas_pixels(driver) -> np.ndarray:
    import base64

    uri = _canvas(driver)
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
    return np.asarray(image)  # (64, 64, 3): the canvas holds the frame at its own size


def _hold_arrow(driver, url: str, key: str, frames: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Open the page, hold the arrow for `key` ("left" or "right") until `frames` frames have
    come, release it: (the prompt's canvas, the last canvas, frames stepped, game frames a
    step). Checks the last frame was stepped with that key's action."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    arrow = {"left": Keys.ARROW_LEFT, "right": Keys.ARROW_RIGHT}[key]
    driver.get(url)
    _wait(driver, "window.opengenie && opengenie.frames >= 1", what="the prompt frame")
    start = _canvas_pixels(driver)
    driver.find_element("id", "screen").click()
    ActionChains(driver).key_down(arrow).perform()
    _wait(driver, f"opengenie.meta.frame >= {frames}", what=f"{frames} frames of holding {key}")
    ActionChains(driver).key_up(arrow).perform()
    time.sleep(0.5)  # a step in flight lands
    stepped = driver.execute_script("return opengenie.meta.frame;")
    action = driver.execute_script("return opengenie.meta.action;")
    assert action == driver.execute_script(f"return opengenie.info.actions.keys['{key}'];")
    skip = driver.execute_script("return opengenie.info.frame_skip;")  # game frames a step
    return start, _canvas_pixels(driver), stepped, skip


def test_holding_right_scrolls_the_shipped_world_as_the_game(shipped_server, browser):
    """Hold → in the browser from the shipped prompt (the first frame of test level 200000)
    and compare the scene's scroll on the canvas with the game's own for as many frames.
    (A strict xfail until play hid part of its context frames, sampling.context_mask 0.5:
    before, the scene sank 4 px on average and held in 9 of 20 seeds; now 17 of 20, and the
    page's own seed holds in bf16 and fp32.)"""
    pytest.importorskip("procgen", reason="needs procgen-mirror (pip install 'opengenie[coinrun]')")

    from opengenie.eval.control import TOLERANCE_PX, TOLERANCE_SHARE
    from opengenie.eval.held_keys import MOVEMENT_ACTION, _act, _env
    from opengenie.eval.scroll import estimate_scroll

    start, world, frames, skip = _hold_arrow(browser, shipped_server, "right", 16)
    env = _env(200000)  # the game, from the same level start, holding → as long
    for _ in range(frames * skip):
        game, _ = _act(env, MOVEMENT_ACTION["right"])
    (game_dx, _), (world_dx, world_dy) = (
        estimate_scroll(start, game),
        estimate_scroll(start, world),
    )
    assert game_dx >= 4  # the game runs right
    assert world_dx > 0, f"the world scrolled {world_dx:.1f} px, the game {game_dx:.1f}"
    assert abs(world_dx - game_dx) <= max(TOLERANCE_PX, TOLERANCE_SHARE * game_dx)
    assert abs(world_dy) < 4  # and stays on the ground


def test_holding_left_scrolls_the_shipped_world_as_the_game(
    shipped_server_mid_level, mid_level_start, browser
):
    """Hold ← in the browser from a mid-level frame of a test level (eval's "mid" start, given
    to `opengenie play --prompt`) and compare the canvas's scroll with the game's own from the
    same state for as many frames: the world runs back left the way the game does."""

    from opengenie.eval.control import TOLERANCE_PX, TOLERANCE_SHARE
    from opengenie.eval.held_keys import _env, hold_movement
    from opengenie.eval.scroll import estimate_scroll

    start, world, frames, skip = _hold_arrow(browser, shipped_server_mid_level, "left", 4)
    env = _env(LEFT_LEVEL)  # the game from the same mid-level state, holding ← as long
    env.callmethod("set_state", mid_level_start[1])
    game, lasted = hold_movement(env, "left", frames * skip)
    assert lasted
    game_dx, _ = estimate_scroll(game[0], game[-1])
    world_dx, _ = estimate_scroll(start, world)
    assert game_dx <= -4  # the game runs left
    assert world_dx < 0, f"the world scrolled {world_dx:.1f} px, the game {game_dx:.1f}"
    assert abs(world_dx - game_dx) <= max(TOLERANCE_PX, TOLERANCE_SHARE * abs(game_dx))


LATENCY_PRESSES = 60
HELD_SECONDS = 4.0


def test_key_to_frame_latency_in_the_shipped_world(shipped_server, browser):
    """Press → 60 times in the shipped world at play's defaults, each from an idle page, then
    hold it for 4 s, and write the time from a key press to the canvas showing its frame
    (median, 95th percentile) and the held-key frame rate to JSON: OPENGENIE_PLAY_LATENCY,
    default bench/results/play_latency.json.
    Speed is written, never asserted; what is asserted is that every press got its frame."""
    import platform
    import statistics

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    from opengenie.atomic import atomic_write_json

    browser.get(shipped_server)
    _wait(browser, "window.opengenie && opengenie.frames >= 1", what="the prompt frame")
    browser.find_element("id", "screen").click()
    right = browser.execute_script("return opengenie.info.actions.keys.right;")
    load_before = os.getloadavg()
    step_ms = []  # the server's own time for each press's step (sample + decode)
    for i in range(LATENCY_PRESSES):
        ActionChains(browser).key_down(Keys.ARROW_RIGHT).key_up(Keys.ARROW_RIGHT).perform()
        _wait(browser, f"opengenie.latencies.length >= {i + 1}", what=f"press {i + 1}'s frame")
        assert browser.execute_script("return opengenie.meta.action;") == right
        step_ms.append(browser.execute_script("return opengenie.meta.ms;"))
        _wait(browser, "!opengenie.inflight", what="an idle page")
        time.sleep(0.1)  # the next press starts from an idle page, as a player's tap would
    latencies = browser.execute_script("return opengenie.latencies;")
    # Then hold → for a few seconds: the frame rate a player sees while running.
    start = browser.execute_script("return opengenie.frames;")
    ActionChains(browser).key_down(Keys.ARROW_RIGHT).perform()
    _wait(browser, f"opengenie.frames >= {start + 3}", what="frames while holding →")
    first, begun = browser.execute_script("return opengenie.frames;"), time.monotonic()
    time.sleep(HELD_SECONDS)
    held = browser.execute_script("return opengenie.frames;") - first
    held_fps = held / (time.monotonic() - begun)
    ActionChains(browser).key_up(Keys.ARROW_RIGHT).perform()
    assert held > 0
    info = browser.execute_script("return opengenie.info;")
    assert len(latencies) == LATENCY_PRESSES and all(ms > 0 for ms in latencies)
    ordered = sorted(latencies)
    report = {
        "bench": "play_latency",
        "what": "ms from keydown (event.timeStamp) to the next animation frame after the "
        "canvas drew that press's frame, headless Chromium, `opengenie play` defaults",
        "world": info["world"],
        "settings": info["settings"],
        "dynamics_dtype": info["dynamics_dtype"],
        "presses": len(latencies),
        "median_ms": statistics.median(latencies),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "mean_ms": statistics.fmean(latencies),
        "latencies_ms": latencies,
        "held_key_frames_per_s": held_fps,
        "held_key_seconds": HELD_SECONDS,
        "server_step_ms_median": statistics.median(step_ms),
        "server_step_ms": step_ms,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    target = Path(os.environ.get("OPENGENIE_PLAY_LATENCY", "bench/results/play_latency.json"))
    atomic_write_json(target, report)
