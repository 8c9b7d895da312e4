import json
import shutil

import numpy as np
import pytest
from PIL import Image

from opengenie.cli import build_parser, main
from opengenie.models import World

from .conftest import SMALL_MODEL

SMALL = [
    *SMALL_MODEL,
    "dynamics.depth=1",
    "frames=4",
    "tokenizer_optim.batch_size=2",
    "dynamics_optim.batch_size=2",
]


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


def test_help_lists_the_command_groups(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for group in ("data", "train", "eval", "generate", "play", "bench"):
        assert group in text


@pytest.fixture(scope="module")
def trained_world(tmp_path_factory):
    from opengenie.data import make_synthetic_dataset

    root = tmp_path_factory.mktemp("run")
    make_synthetic_dataset(root / "data", episodes=3, length=12, size=32)
    out = root / "world"
    code = main(
        ["train", "all", "--data", str(root / "data"), "--out", str(out), "--steps", "3"]
        + _sets(SMALL + ["dynamics.action_mode=token"])
    )
    assert code == 0
    return root, out


def test_train_all_writes_a_loadable_world_with_the_overrides(trained_world):
    root, out = trained_world
    world = World.load(out)
    assert world.config.dynamics.action_mode == "token"  # --set took effect
    assert world.config.tokenizer.dim == 32
    state = json.loads((out / "config.json").read_text())
    assert state["format"] == "opengenie-world"
    assert (root / "world-tokenizer" / "config.json").exists()


def test_generate_writes_a_gif_with_the_asked_actions(trained_world, tmp_path, capsys):
    _, out = trained_world
    prompt = tmp_path / "p.png"
    Image.fromarray(np.zeros((50, 70, 3), np.uint8)).save(prompt)
    gif = tmp_path / "clip.gif"
    args = ["generate", "--world", str(out), "--prompt", str(prompt), "--out", str(gif)]
    assert main(args + ["--actions", "0,1,2", "--steps", "2", "--scale", "2"]) == 0
    image = Image.open(gif)
    assert image.n_frames == 4 and image.size == (64, 64)
    assert "actions 0,1,2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--actions", "0,99"], "action ids must be in"),
        (["--actions", "left"], "--actions must be"),
        (["--steps", "0"], "--steps must be"),
    ],
)
def test_generate_bad_input_is_one_line(trained_world, tmp_path, capsys, extra, message):
    _, out = trained_world
    prompt = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(prompt)
    args = [
        "generate",
        "--world",
        str(out),
        "--prompt",
        str(prompt),
        "--out",
        str(tmp_path / "c.gif"),
    ]
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c.gif").exists()


def test_bad_prompt_and_wrong_checkpoint_are_one_line(trained_world, tmp_path, capsys):
    root, out = trained_world
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    base = ["generate", "--out", str(tmp_path / "c.gif")]
    assert main(base + ["--world", str(out), "--prompt", str(junk)]) == 2
    assert "cannot read prompt image" in capsys.readouterr().err
    tok = root / "world-tokenizer"
    assert main(base + ["--world", str(tok), "--prompt", str(junk)]) == 2
    assert "opengenie-tokenizer checkpoint, not a opengenie-world" in capsys.readouterr().err
    assert main(base + ["--world", str(root / "data"), "--prompt", str(junk)]) == 2
    assert "it is a data set" in capsys.readouterr().err


def test_generate_defaults_to_the_worlds_prompt(trained_world, tmp_path, capsys):
    _, out = trained_world
    world = tmp_path / "world"
    shutil.copytree(out, world)
    gif = tmp_path / "clip.gif"
    args = ["generate", "--world", str(world), "--out", str(gif), "--actions", "0", "--steps", "1"]
    assert main(args) == 2  # no prompt.png in the world yet
    assert "pass --prompt" in capsys.readouterr().err
    firsts = []
    for value in (0, 255):  # the world's prompt.png is what frame 0 shows
        Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(world / "prompt.png")
        assert main(args) == 0
        firsts.append(np.asarray(Image.open(gif).convert("RGB")))
    assert not np.array_equal(firsts[0], firsts[1])


def test_bench_times_a_windowed_tokenizer_on_the_clips_it_trains_on():
    from opengenie.bench import measure_phase
    from opengenie.config import preset

    # The tiny preset trains its tokenizer on 4-frame clips: 2 x 16 frames become 8 x 4.
    config = preset("tiny", [*SMALL_MODEL, "frames=16"])
    result = measure_phase(config, "tokenizer", batch=2, steps=1, warmup=0)
    assert (result["clips"], result["clip_frames"]) == (8, 4)
    assert result["bf16"]["frames_per_s"] > 0
    full = preset("tiny", [*SMALL_MODEL, "frames=16", "tokenizer.temporal_window=0"])
    assert measure_phase(full, "tokenizer", 2, 1, 0)["clips"] == 2
