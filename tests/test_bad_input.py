"""Bad input reaches the user as one line `opengenie: error: ...`, never as a traceback
(issue 17): numeric options (opengenie/options.py), prompt images (imageio.read_image) and
dataset indexes (data/storage.py). Each case runs the real CLI in-process."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from opengenie.cli import main
from opengenie.options import MAX_VIDEO_PIXELS, STEPS, TEMPERATURE


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("opengenie: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err
    return lines[0]


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels but holds no image data (bytes, not GBs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b""))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


# -- 1. numeric options -------------------------------------------------------------------------

# generate: (extra argv, what the one line must name). All fail before any frame is generated.
GENERATE_OPTIONS = {
    "temperature-nan": (["--temperature", "nan"], "--temperature"),
    "temperature-inf": (["--temperature", "inf"], "--temperature"),
    "temperature-negative": (["--temperature", "-1"], "--temperature"),
    "temperature-zero": (["--temperature", "0"], "--temperature"),
    "temperature-text": (["--temperature", "hot"], "--temperature"),
    "scale-huge": (["--scale", "1000"], "--scale"),
    "scale-zero": (["--scale", "0"], "--scale"),
    "scale-negative": (["--scale", "-2"], "--scale"),
    "frames-negative": (["--frames", "-1"], "--frames"),
    "frames-zero": (["--frames", "0"], "--frames"),
    "frames-huge": (["--frames", "10000000"], "--frames"),
    "steps-zero": (["--steps", "0"], "--steps"),
    "steps-huge": (["--steps", "100000"], "--steps"),
    "seed-negative": (["--seed", "-1"], "--seed"),
    # Each option is fine alone; together the video would be 101 frames of 4096x4096 pixels.
    "video-budget": (["--scale", "64", "--frames", "100"], "too large a video"),
    "video-budget-actions": (["--scale", "64", "--actions", ",".join(["0"] * 50)], "--scale"),
}


@pytest.mark.parametrize("case", sorted(GENERATE_OPTIONS))
def test_generate_refuses_bad_numbers_in_one_line(case, tmp_path, capsys):
    extra, names = GENERATE_OPTIONS[case]
    out = tmp_path / "clip.gif"
    code = main(["generate", "--out", str(out), *extra])
    assert_one_line_error(code, capsys.readouterr().err, names)
    assert not out.exists()


# Other commands: parsing refuses these before any work (the data path need not exist).
OTHER_OPTIONS = {
    "play-temperature-nan": (["play", "--temperature", "nan"], "--temperature"),
    "play-steps-over-page-limit": (["play", "--steps", "1000"], "--steps"),
    "play-upload-nan": (["play", "--max-upload-mb", "nan"], "--max-upload-mb"),
    "play-upload-inf": (["play", "--max-upload-mb", "inf"], "--max-upload-mb"),
    "play-port": (["play", "--port", "70000"], "--port"),
    "eval-temperature-inf": (
        ["eval", "--data", "nowhere", "--temperature", "inf"],
        "--temperature",
    ),
    "eval-extra-temperature": (
        ["eval", "--data", "nowhere", "--extra-temperature", "1,nan"],
        "--extra-temperature",
    ),
    "eval-extra-steps": (["eval", "--data", "nowhere", "--extra-steps", "8,0"], "--extra-steps"),
    "eval-seed": (["eval", "--data", "nowhere", "--seed", "-1"], "--seed"),
    "eval-clips": (["eval", "--data", "nowhere", "--clips", "0"], "--clips"),
    "bench-models-steps": (["bench", "models", "--steps", "0"], "--steps"),
    "bench-models-batch": (["bench", "models", "--batch", "0"], "--batch"),
    "bench-tokenizer-warmup": (["bench", "tokenizer", "--warmup", "-1"], "--warmup"),
    "bench-play-frames": (["bench", "play", "--frames", "0"], "--frames"),
    "bench-play-sweep": (["bench", "play", "--sweep", "2,0"], "--sweep"),
    "data-video-fps-nan": (["data", "video", "nowhere.mp4", "--fps", "nan"], "--fps"),
    "data-video-fps-zero": (["data", "video", "nowhere.mp4", "--fps", "0"], "--fps"),
    "data-video-size": (["data", "video", "nowhere.mp4", "--size", "0"], "--size"),
    "data-video-val-fraction": (
        ["data", "video", "nowhere.mp4", "--val-fraction", "2"],
        "--val-fraction",
    ),
    "data-video-min-frames": (["data", "video", "nowhere.mp4", "--min-frames", "-3"], "--min"),
    "data-coinrun-episodes": (["data", "coinrun", "--episodes", "-1"], "--episodes"),
    "data-coinrun-levels": (["data", "coinrun", "--episodes", "1", "--levels", "5:2"], "--levels"),
}


@pytest.mark.parametrize("case", sorted(OTHER_OPTIONS))
def test_other_commands_refuse_bad_numbers_in_one_line(case, tmp_path, capsys, monkeypatch):
    import opengenie.play.cli

    async def never_serve(*_args):  # old code served `--temperature nan`: fail, do not hang
        raise AssertionError("play started serving")

    monkeypatch.setattr(opengenie.play.cli, "_serve", never_serve)
    argv, names = OTHER_OPTIONS[case]
    out = tmp_path / "out"
    code = main([*argv, "--out", str(out)] if argv[0] != "play" else [*argv, "--no-browser"])
    assert_one_line_error(code, capsys.readouterr().err, names)
    assert not out.exists()


def test_play_page_and_cli_share_one_rule_set(tmp_path, capsys):
    """The page refuses what the CLI refuses, and says the same rule."""
    from opengenie.errors import UserError
    from opengenie.play import server

    assert STEPS.high == server.MAX_STEPS  # what the page's info tells the slider
    assert (TEMPERATURE.low, TEMPERATURE.high) == server.TEMPERATURE_RANGE
    sampling = SimpleNamespace(steps=8, temperature=1.0, mode="random", guidance=0.0)
    session = SimpleNamespace(sampling=sampling)
    player = SimpleNamespace(session=session)
    cases = [
        ("temperature", math.nan, "nan"),
        ("temperature", math.inf, "inf"),
        ("temperature", 1e-9, "1e-9"),
        ("steps", 101, "101"),
        ("steps", 0, "0"),
    ]
    for name, value, text in cases:
        code = main(["generate", f"--{name}", text, "--out", str(tmp_path / "x.gif")])
        line = assert_one_line_error(code, capsys.readouterr().err, f"--{name} must be ")
        rule = line.split(" must be ", 1)[1].split(" (got ")[0]  # e.g. "an integer in 1..100"
        with pytest.raises(UserError) as refused:
            server.PlayServer._apply_settings(None, player, {name: value})
        assert str(refused.value).startswith(f"{name} must be {rule} (got ")
    for message in ({"temperature": True}, {"steps": 8.0}, {"steps": "8"}):
        with pytest.raises(UserError, match="must be"):
            server.PlayServer._apply_settings(None, player, message)
    assert (session.sampling.steps, session.sampling.temperature) == (8, 1.0)  # nothing changed
    reply = server.PlayServer._apply_settings(None, player, {"steps": 100, "temperature": 10})
    assert (reply["steps"], reply["temperature"]) == (100, 10.0)


# Property: whatever odd values generate gets, it writes the video or gives the one line, and
# which of the two is decided by the rules alone. A stand-in World (8x8 frames) keeps it fast.
# About half the draws are odd (nan, inf, negative, zero, huge, not a number), half fine.
ODD_FLOATS = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e-9", "1e400", "10.5", "x", ""]),
    st.floats(0.01, 10).map(repr),
)
ODD_INTS = st.one_of(
    st.integers(-2, 12).map(str),
    st.sampled_from(["65", "10001", "99999999999999999999", "-99", "1.5", "nan", "", "two"]),
)


class StandInWorld:
    size = 8

    def __init__(self) -> None:
        self.num_actions = 4
        self.config = SimpleNamespace(image_size=self.size, fps=10)
        self.sampling = SimpleNamespace(steps=8, temperature=1.0, mode="random")

    def reset(self, prompt, seed=None):
        self.t = 0
        return np.zeros((self.size, self.size, 3), np.uint8)

    def step(self, action):  # a new shade each frame (a GIF merges repeated frames)
        self.t += 1
        return np.full((self.size, self.size, 3), self.t * 17 % 256, np.uint8)


def _number(text: str, integer: bool) -> float | None:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(temperature=ODD_FLOATS, scale=ODD_INTS, frames=ODD_INTS)
def test_generate_odd_numbers_property(temperature, scale, frames, monkeypatch):
    from opengenie.models import World

    monkeypatch.setattr(World, "load", classmethod(lambda cls, *a, **k: StandInWorld()))
    t, s, f = _number(temperature, False), _number(scale, True), _number(frames, True)
    fits = s is not None and f is not None and 1 <= s <= 64 and 1 <= f <= 10_000
    fits = fits and (f + 1) * (StandInWorld.size * s) ** 2 <= MAX_VIDEO_PIXELS
    ok = t is not None and 0.01 <= t <= 10 and fits
    event("written" if ok else "refused")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.gif"
        Image.new("RGB", (8, 8)).save(Path(tmp) / "p.png")
        argv = ["generate", "--out", str(out), "--prompt", str(Path(tmp) / "p.png")]
        argv += [f"--temperature={temperature}", f"--scale={scale}", f"--frames={frames}"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        if ok:
            assert code == 0, err.getvalue()
            with Image.open(out) as gif:
                assert gif.n_frames == f + 1 and gif.size == (8 * s, 8 * s)
        else:
            assert_one_line_error(code, err.getvalue())
            assert not out.exists()


# -- 2. prompt images ---------------------------------------------------------------------------


def _truncated_png(path: Path) -> None:
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        png, "PNG"
    )
    path.write_bytes(png.getvalue()[:300])


PROMPTS = {
    "bomb-20000": (lambda p: p.write_bytes(png_header(20000, 20000)), "too large"),
    "warned-10000": (lambda p: p.write_bytes(png_header(10000, 10000)), "too large"),
    "over-limit-9000": (lambda p: p.write_bytes(png_header(9000, 9000)), "too large"),
    "text": (lambda p: p.write_text("not an image"), "not a readable image"),
    "truncated": (_truncated_png, "not a readable image"),
    "missing": (lambda p: None, "no such file"),
    "directory": (lambda p: p.mkdir(), "directory"),
}


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")  # none on stderr
@pytest.mark.parametrize("command", ["generate", "play"])
@pytest.mark.parametrize("case", sorted(PROMPTS))
def test_bad_prompt_image_is_one_line_naming_it(case, command, tmp_path, capsys, monkeypatch):
    import opengenie.play.cli

    async def never_serve(*_args):
        raise AssertionError("play started serving")

    monkeypatch.setattr(opengenie.play.cli, "_serve", never_serve)
    make, message = PROMPTS[case]
    prompt = tmp_path / "prompt.png"
    make(prompt)
    out = tmp_path / "clip.gif"
    extra = ["--out", str(out), "--frames", "1"] if command == "generate" else ["--no-browser"]
    code = main([command, "--prompt", str(prompt), *extra])
    assert_one_line_error(code, capsys.readouterr().err, str(prompt), message)
    assert not out.exists()


# -- 3. dataset indexes ---------------------------------------------------------------------------

META, SHARD = "dataset.json", "shards/shard-000000"


def _edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


def _meta(change):
    return lambda d: _edit_json(d / META, change)


def _shard(change):
    return lambda d: _edit_json(d / f"{SHARD}.json", change)


def _first_episode(**fields):
    return _shard(lambda t: t["episodes"][0].update(fields))


# case -> (the file the one line must name, a function that damages the dataset directory)
DATASET_DAMAGE = {
    "index-list": (META, lambda d: (d / META).write_text("[1, 2]")),
    "index-invalid-json": (META, lambda d: (d / META).write_text('{"format": ')),
    "index-binary": (META, lambda d: (d / META).write_bytes(b"\xff\xfe\x00")),
    "frame-size-int": (META, _meta(lambda m: m.update(frame_size=64))),
    "frame-size-text": (META, _meta(lambda m: m.update(frame_size="64x64"))),
    "fps-text": (META, _meta(lambda m: m.update(fps="fast"))),
    "fps-nan": (
        META,
        lambda d: (d / META).write_text(
            (d / META).read_text().replace('"fps": 10.0', '"fps": NaN')
        ),
    ),
    "shards-missing": (META, _meta(lambda m: m.pop("shards"))),
    "shard-dotdot": (META, _meta(lambda m: m.update(shards=["../../elsewhere/shard-000000"]))),
    "shard-absolute": (META, _meta(lambda m: m.update(shards=["/etc/passwd"]))),
    "shard-twice": (META, _meta(lambda m: m.update(shards=[m["shards"][0]] * 2))),
    "shard-index-missing": (f"{SHARD}.json", lambda d: (d / f"{SHARD}.json").unlink()),
    "shard-index-list": (f"{SHARD}.json", lambda d: (d / f"{SHARD}.json").write_text("[]")),
    "shard-no-frames": (f"{SHARD}.json", _shard(lambda t: t.pop("frames"))),
    "shard-no-episodes": (f"{SHARD}.json", _shard(lambda t: t.pop("episodes"))),
    "episode-bad-split": (f"{SHARD}.json", _first_episode(split="dev")),
    "episode-past-end": (f"{SHARD}.json", _first_episode(length=10_000)),
    "episode-no-length": (f"{SHARD}.json", _shard(lambda t: t["episodes"][0].pop("length"))),
    "frames-missing": (f"{SHARD}.frames", lambda d: (d / f"{SHARD}.frames").unlink()),
    "frames-truncated": (f"{SHARD}.frames", lambda d: os.truncate(d / f"{SHARD}.frames", 1000)),
    "actions-truncated": (f"{SHARD}.actions", lambda d: os.truncate(d / f"{SHARD}.actions", 3)),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from opengenie.data import make_synthetic_dataset

    path = tmp_path_factory.mktemp("data") / "synthetic"
    make_synthetic_dataset(path, episodes=2, length=20, size=64, split="test")
    make_synthetic_dataset(path, episodes=2, length=20, size=64, split="train")
    return path


def damaged_dataset(dataset: Path, tmp_path: Path, case: str) -> tuple[Path, Path]:
    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    name, damage = DATASET_DAMAGE[case]
    damage(copy)
    return copy, copy / name


@pytest.mark.parametrize("sheet", [False, True], ids=["no-sheet", "sheet"])
@pytest.mark.parametrize("case", sorted(DATASET_DAMAGE))
def test_data_info_reports_damage_in_one_line(case, sheet, dataset, tmp_path, capsys):
    data, damaged = damaged_dataset(dataset, tmp_path, case)
    out = tmp_path / "sheet.png"
    argv = ["data", "info", str(data), *(["--sheet", str(out)] if sheet else ["--no-sheet"])]
    assert_one_line_error(main(argv), capsys.readouterr().err, str(damaged))
    assert not out.exists()


@pytest.mark.parametrize("case", ["index-list", "shard-no-frames", "frames-truncated"])
def test_train_reports_damaged_data_in_one_line(case, dataset, tmp_path, capsys):
    data, damaged = damaged_dataset(dataset, tmp_path, case)
    out = tmp_path / "run"
    argv = ["train", "tokenizer", "--data", str(data), "--out", str(out), "--steps", "1"]
    assert_one_line_error(main([*argv, "--no-tensorboard"]), capsys.readouterr().err, str(damaged))
    assert not (out / "model.safetensors").exists()


def test_intact_dataset_opens_with_its_health_checked(dataset, capsys):
    """The checks pass a whole dataset: the copy the damage cases start from is described."""
    assert main(["data", "info", str(dataset), "--no-sheet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 4
