"""Video ingestion with PyAV: a small video written here, next to a corrupt file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from opengenie.data import open_dataset
from opengenie.data.video import (
    decode_video,
    episode_lengths,
    file_digest,
    ingest_videos,
    split_for_digest,
)
from opengenie.errors import UserError

av = pytest.importorskip("av", reason="PyAV is a core dependency; without it there is no video")


def write_video(path, frames: int = 40, fps: int = 20, w: int = 48, h: int = 32) -> None:
    """A w x h h264 video: red band left, blue band right (both outside the centre square),
    green centre whose brightness encodes the frame index."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "1"}
        band = (w - h) // 2
        for i in range(frames):
            img = np.zeros((h, w, 3), np.uint8)  # (H, W, 3)
            img[:, :band] = (255, 0, 0)
            img[:, w - band :] = (0, 0, 255)
            img[:, band : w - band, 1] = (40 + 5 * i) % 256
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture
def videos(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_video(d / "good.mp4")
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return d


def test_decode_resamples_crops_and_resizes(videos):
    frames = list(decode_video(videos / "good.mp4", fps=10, size=16))
    assert len(frames) == 20  # 40 frames at 20 fps = 2 s -> 20 frames at 10 fps
    assert frames[0].shape == (16, 16, 3) and frames[0].dtype == np.uint8
    f = np.stack(frames).astype(int)  # (20, 16, 16, 3)
    # Centre crop: the red and blue side bands are cut away, only the green centre remains.
    assert f[..., 0].max() < 40 and f[..., 2].max() < 40
    # Output frame k shows source frame 2k: green = 40 + 5 * 2k.
    np.testing.assert_allclose(f[:, 8, 8, 1], 40 + 10 * np.arange(20), atol=6)
    assert len(list(decode_video(videos / "good.mp4", fps=40, size=8))) == 80  # upsampling repeats


def test_corrupt_file_is_reported_by_name_and_skipped(videos, tmp_path, capsys):
    out = tmp_path / "ds"
    s = ingest_videos(out, [videos], fps=10, size=16, split="val", episode_frames=8, min_frames=4)
    assert s["ingested"] == 1 and [p for p, _ in s["skipped"]] == [str(videos / "broken.mp4")]
    assert "broken.mp4" in capsys.readouterr().err
    ds = open_dataset(out)
    # 20 frames cut into ceil(20 / 8) = 3 near-equal episodes, all in the requested split.
    assert sorted(ds.ep_length.tolist()) == [6, 7, 7] and ds.num_frames == 20
    assert {e.split for e in ds.episodes()} == {"val"}
    assert all(
        e.source.startswith("video:good.mp4#") and e.level_seed is None for e in ds.episodes()
    )
    # Same file again: recognised by content and skipped, so none ingested -> error.
    with pytest.raises(UserError, match="no video could be ingested"):
        ingest_videos(out, [videos / "good.mp4"], fps=10, size=16)
    assert open_dataset(out).num_episodes == 3


def test_no_readable_video_is_an_error_and_writes_nothing(videos, tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(UserError, match="broken.mp4"):
        ingest_videos(out, [videos / "broken.mp4"], fps=10, size=16)
    assert not out.exists()
    txt = tmp_path / "notes.txt"
    txt.write_text("not a video")
    with pytest.raises(UserError, match="notes.txt"):
        ingest_videos(out, [txt], fps=10, size=16)
    with pytest.raises(UserError, match="does not exist"):
        ingest_videos(out, [tmp_path / "missing.mp4"], fps=10, size=16)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no video files"):
        ingest_videos(out, [empty], fps=10, size=16)
    assert not out.exists()


def test_split_is_a_stable_hash_of_the_file(videos, tmp_path):
    digest = file_digest(videos / "good.mp4")
    want = split_for_digest(digest, 0.3, 0.3)
    s = ingest_videos(tmp_path / "ds", [videos / "good.mp4"], fps=10, size=8,
                      val_fraction=0.3, test_fraction=0.3)  # fmt: skip
    assert s["files_per_split"][want] == 1
    assert {e.split for e in open_dataset(tmp_path / "ds").episodes()} == {want}
    # The hash spreads files over the splits in proportion.
    digests = [hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest() for i in range(3000)]
    splits = [split_for_digest(d, 0.1, 0.2) for d in digests]
    assert abs(splits.count("val") / 3000 - 0.1) < 0.03
    assert abs(splits.count("test") / 3000 - 0.2) < 0.03


def test_episode_lengths_have_no_tiny_tail():
    assert episode_lengths(20, 8) == [7, 7, 6]
    assert episode_lengths(1001, 1000) == [501, 500]
    assert episode_lengths(5, 1000) == [5]
