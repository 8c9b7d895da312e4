"""`opengenie data ...` wiring: subcommands, options reaching the code, info output."""

from __future__ import annotations

import argparse
import json

import pytest
from PIL import Image

from opengenie.data import make_synthetic_dataset, open_dataset
from opengenie.data.cli import add_parser, main
from opengenie.errors import UserError


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="opengenie")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_subcommands_are_registered_with_help(capsys):
    for sub in ("coinrun", "video", "atari", "info"):
        with pytest.raises(SystemExit) as e:
            _parse(["data", sub, "--help"])
        assert e.value.code == 0
        assert "usage: opengenie data " + sub in capsys.readouterr().out
    args = _parse(["data", "coinrun", "--out", "d", "--episodes", "3", "--levels", "5:9"])
    assert (args.episodes, args.levels, args.split, args.game) == (3, "5:9", "train", "coinrun")
    assert callable(args.func)


def test_info_describes_and_writes_contact_sheet(tmp_path, capsys):
    path = tmp_path / "ds"
    make_synthetic_dataset(path, episodes=3, length=30, size=16, fps=10)
    make_synthetic_dataset(path, episodes=2, length=12, size=16, fps=10, split="test")
    sheet = tmp_path / "sheet.png"
    args = _parse(["data", "info", str(path), "--json", "--sheet", str(sheet), "--rows", "4"])
    assert args.func(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["episodes"], d["frames"]) == (5, 3 * 30 + 2 * 12)
    assert d["hours"] == pytest.approx(114 / 10 / 3600)
    assert d["splits"]["test"]["sources"]["synthetic:square"]["levels"] == {
        "first": 200_000, "end": 200_002, "count": 2,
    }  # fmt: skip
    assert set(d["splits"]) == {"train", "test"}
    assert d["contact_sheet"] == str(sheet)
    img = Image.open(sheet)
    assert img.size == (2 * (8 * 18 + 2), 2 * (4 * 18 + 2))  # 8 cols x 4 rows of 16px + 2px grid
    args = _parse(["data", "info", str(path), "--no-sheet"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "frames    114 in 5 episodes, 16x16 at 10 fps" in text and "contact sheet" not in text


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    with pytest.raises(UserError, match="--shard-mb"):
        main_args = _parse(["data", "coinrun", "--out", str(tmp_path / "x"), "--episodes", "1",
                            "--shard-mb", "0"])  # fmt: skip
        main_args.func(main_args)
    assert not (tmp_path / "x").exists()


def test_video_command_end_to_end(tmp_path, capsys):
    pytest.importorskip("av", reason="PyAV is a core dependency")
    from tests.test_data_video import write_video

    vid = tmp_path / "clip.mp4"
    write_video(vid, frames=60, fps=30)
    out = tmp_path / "ds"
    argv = ["video", "--out", str(out), str(vid), "--fps", "15", "--size", "24", "--split", "test"]
    assert main(argv) == 0
    assert "ingested 1 files (test 1)" in capsys.readouterr().out
    ds = open_dataset(out)
    assert ds.frame_size == (24, 24) and ds.fps == 15 and ds.num_frames == 30


def test_data_frame_writes_a_prompt_png(tmp_path, capsys):
    import numpy as np

    from opengenie.cli import main

    ds = make_synthetic_dataset(tmp_path / "d", episodes=2, length=10, size=16, split="test")
    out = tmp_path / "p.png"
    assert (
        main(
            [
                "data",
                "frame",
                str(tmp_path / "d"),
                "--episode",
                "1",
                "--index",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    expected = ds.frames(int(ds.episode_ids("test")[1]))[3]
    assert (np.asarray(Image.open(out)) == expected).all()
    assert main(["data", "frame", str(tmp_path / "d"), "--split", "val", "--out", str(out)]) == 2
    assert "no val episodes" in capsys.readouterr().err
