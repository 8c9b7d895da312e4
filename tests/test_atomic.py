"""Whole-file writes: the target holds the old or the new content, never a mix or a temp."""

from __future__ import annotations

import json
import os

import pytest

from opengenie.atomic import atomic_write_json, atomic_write_text


def test_atomic_write_leaves_no_temp_files(tmp_path) -> None:
    atomic_write_text(tmp_path / "sub" / "m.json", "{}")
    atomic_write_text(tmp_path / "sub" / "m.json", '{"x": 1}')
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.json"]
    assert json.loads((tmp_path / "sub" / "m.json").read_text()) == {"x": 1}


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "report.json"
    atomic_write_json(target, {"old": True})

    def crash(src, dst):  # the process dies between writing the temp file and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(target, {"new": True})
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
