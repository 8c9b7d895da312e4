"""`opengenie eval` end to end on a tiny synthetic dataset with a random small world."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from opengenie.cli import main
from opengenie.config import PLAY_STEPS, preset
from opengenie.data import make_synthetic_dataset
from opengenie.models import World

from .conftest import SMALL_MODEL

SMALL = [*SMALL_MODEL, "dynamics.depth=1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    make_synthetic_dataset(root / "data", episodes=5, length=24, size=32, split="test")
    make_synthetic_dataset(root / "data", episodes=1, length=24, size=32, split="train")
    World(preset("tiny", SMALL)).save(root / "world")
    return root


def _eval(root, *extra: str) -> int:
    args = ["eval", "--world", str(root / "world"), "--data", str(root / "data")]
    args += ["--fvd-cache", str(root / "cache"), "--batch-size", "5", "--steps", "3", "--quiet"]
    return main(args + list(extra))


def test_eval_writes_metrics_report_and_action_map(setup, capsys) -> None:
    root = setup
    out = root / "report"
    code = _eval(root, "--clips", "5", "--fvd-clips", "3", "--out", str(out))
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["schema"] == "opengenie-eval/1"
    for key in ("psnr", "ssim"):
        assert isinstance(m["tokenizer"][key], float)
    d = m["dynamics"]["delta_t_psnr"]
    assert {"value", "ci_low", "ci_high", "frame_psnr"} <= set(d)
    assert d["ci_low"] <= d["value"] <= d["ci_high"]
    assert isinstance(m["dynamics"]["next_frame_psnr"], float)
    extra_steps = [e["steps"] for e in m["dynamics"]["delta_t_psnr_extra"]]
    assert extra_steps == [PLAY_STEPS] and PLAY_STEPS != 25  # play's, labelled
    s = m["settings"]
    assert (s["clips"], s["episodes"], s["steps"], s["t"], s["split"]) == (5, 5, 3, 4, "test")
    assert s["protocol"] is False  # --steps 3 is not the protocol's 25
    assert m["fvd"]["n"] == 3
    if m["fvd"]["value"] is None:  # I3D weights not installed: a reason, never a number
        assert m["fvd"]["reason"]
    else:
        assert m["fvd"]["value"] >= 0 and m["fvd"]["real_stats"] == "computed"
    assert m["actions"]["nmi"] is not None and m["actions"]["codes_used"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 and "<svg" in page
    images = {p.name for p in (out / "images").glob("*.png")}
    assert {"reconstruction_0.png", "rollout_0.png", "actions_0.png"} <= images
    actions = Image.open(out / "images" / "actions_0.png")
    assert actions.height >= World.load(root / "world").num_actions * 32  # one row per action
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # offline
    amap = json.loads((root / "world" / "action_map.json").read_text())
    assert set(amap) == {"names", "keys", "nmi", "accuracy"}
    names = {"left", "right", "up", "down", "noop"}
    assert set(amap["names"].values()) <= names
    assert all(amap["names"][str(code)] == name for name, code in amap["keys"].items())
    assert World.load(root / "world").action_map == amap  # what play reads
    assert "ΔtPSNR" in capsys.readouterr().out

    # Again with FVD: the real statistics now come from the cache.
    code = _eval(root, "--clips", "5", "--fvd-clips", "3", "--extra-steps", "", "--out", str(out))
    assert code == 0
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["dynamics"]["delta_t_psnr_extra"] == []
    if m2["fvd"]["value"] is not None:
        assert m2["fvd"]["real_stats"] == "cached"
        assert m2["fvd"]["value"] == pytest.approx(m["fvd"]["value"], rel=1e-6)
    assert m2["dynamics"]["delta_t_psnr"] == m["dynamics"]["delta_t_psnr"]  # seeded


@pytest.mark.parametrize("named", [False, True])
def test_eval_leaves_the_shipped_world_as_it_shipped(setup, tmp_path, monkeypatch, named) -> None:
    # Without --world, or with the package's own path, eval evaluates the world inside the
    # package; it must not write there.
    import opengenie.models.world as world_module

    shipped = tmp_path / "shipped"
    World(preset("tiny", SMALL)).save(shipped)
    before = {p.name: p.read_bytes() for p in shipped.iterdir()}
    monkeypatch.setattr(world_module, "SHIPPED_WORLD", shipped)
    args = ["eval", "--data", str(setup / "data"), "--out", str(tmp_path / "report")]
    args += ["--world", str(shipped)] if named else []
    args += ["--fvd-cache", str(setup / "cache"), "--batch-size", "5", "--steps", "3"]
    assert main([*args, "--clips", "5", "--fvd-clips", "3", "--quiet"]) == 0
    assert {p.name: p.read_bytes() for p in shipped.iterdir()} == before
    assert (tmp_path / "report" / "action_map.json").exists()


def test_eval_without_i3d_weights_reports_reason(setup, monkeypatch) -> None:
    import opengenie.eval.i3d as i3d

    monkeypatch.setattr(i3d, "load_i3d", lambda device="cpu": (None, "I3D weights not installed"))
    out = setup / "noweights"
    assert _eval(setup, "--clips", "3", "--extra-steps", "", "--out", str(out)) == 0
    fvd = json.loads((out / "metrics.json").read_text())["fvd"]
    assert fvd["value"] is None and fvd["reason"] == "I3D weights not installed"
    assert "n/a" in (out / "report.html").read_text()


def _error(capsys, args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("opengenie: error:") and "\n" not in err
    return err


def test_eval_bad_input_is_one_line(setup, tmp_path, capsys) -> None:
    root = setup
    world, data = str(root / "world"), str(root / "data")
    assert "does not exist" in _error(capsys, ["eval", "--world", world, "--data", "/nope"])
    err = _error(capsys, ["eval", "--world", data, "--data", data])
    assert "data set" in err
    assert "not a directory" in _error(capsys, ["eval", "--world", "/nope", "--data", data])
    err = _error(capsys, ["eval", "--world", world, "--data", data, "--split", "val"])
    assert "no val episodes" in err
    err = _error(capsys, ["eval", "--world", world, "--data", data, "--split", "dev"])
    assert "unknown split" in err
    err = _error(capsys, ["eval", "--world", world, "--data", data, "--steps", "0"])
    assert "--steps must be an integer in 1..100" in err


def test_eval_measures_control_on_coinrun_and_pairs_keys_by_it(tmp_path, capsys) -> None:
    """On CoinRun data eval replays the game from the split's levels with held keys; the
    pairing it measures with is the one it writes for play; --control-levels 0 skips it."""
    pytest.importorskip("procgen", reason="needs procgen-mirror (pip install 'opengenie[coinrun]')")
    from opengenie.data.coinrun import generate_procgen

    data, world_dir = tmp_path / "data", tmp_path / "world"
    generate_procgen(data, levels="200000:200003", split="test", max_steps=20, workers=1)
    World(preset("tiny", [s for s in SMALL if not s.startswith("image_size")])).save(world_dir)
    args = ["eval", "--world", str(world_dir), "--data", str(data), "--fvd-clips", "0"]
    args += ["--clips", "3", "--batch-size", "8", "--steps", "2", "--quiet"]
    out = tmp_path / "report"
    assert main([*args, "--extra-steps", "1", "--control-levels", "2", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    c = m["control"]
    # The extra sampling setting gets its own control bars (bench play joins them).
    assert [(e["steps"], e["temperature"]) for e in c["extra"]] == [(1, 1.0)]
    assert set(c["extra"][0]["bars"]) == set(c["bars"])
    assert c["levels"] == [200000, 200001] and c["frames"] == 16
    assert set(c["movements"]) == {"left", "left+jump", "none", "jump", "right", "right+jump"}
    right = c["movements"]["right"]["first"]
    assert right["cases"] == 2 and right["game_dx"][1] > 4  # the game runs right
    assert set(c["bars"]) >= {"right_first_same_way", "still_psnr16", "lam_held_nmi"}
    assert 0 <= c["bars"]["right_first_same_way_ceiling"] <= 1  # the tokenizer's, beside it
    amap = json.loads((world_dir / "action_map.json").read_text())
    assert amap["keys"] == c["keys"] == m["actions"]["keys"]
    assert World.load(world_dir).action_map["keys"] == c["keys"]  # what play sends
    page = (out / "report.html").read_text()
    assert "Control: held keys" in page and "same way (x) / tokenizer" in page
    assert any(p.name.startswith("control_") for p in (out / "images").glob("*.png"))
    printed = capsys.readouterr().out
    assert "control (2 levels)" in printed
    assert "control at steps=1, temperature=1 (2 levels)" in printed
    r0 = ["--extra-steps", "", "--control-levels", "0", "--out", str(tmp_path / "r0")]
    assert main([*args, *r0]) == 0
    assert json.loads((tmp_path / "r0" / "metrics.json").read_text())["control"] is None


def _quick_eval(root, world: str, out: str, *extra: str) -> dict:
    """A 5-clip, 2-step eval of root/world on root/data without FVD; its metrics."""
    args = ["eval", "--world", str(root / world), "--data", str(root / "data")]
    args += ["--batch-size", "5", "--steps", "2", "--quiet", "--clips", "5"]
    args += ["--fvd-clips", "0", "--extra-steps", "", *extra, "--out", str(root / out)]
    assert main(args) == 0
    return json.loads((root / out / "metrics.json").read_text())


def test_eval_guidance_changes_the_rollouts_and_is_recorded(setup, capsys) -> None:
    """--guidance reaches every rollout (other ΔtPSNR frames than without), is written to the
    settings and makes the run non-protocol; a world that does not know which action stands
    still is refused in one line before any work."""
    root = setup
    assert _eval(root, "--clips", "5", "--guidance", "1", "--out", str(root / "g0")) == 2
    err = capsys.readouterr().err
    assert "stand still" in err and "Traceback" not in err
    world = World.load(root / "world")
    world.action_map = {"names": {"1": "none"}, "keys": {"none": 1}}
    world.save(root / "paired")
    # eval rewrites action_map.json from this data: guided first
    runs = {g: _quick_eval(root, "paired", f"guided{g}", "--guidance", g) for g in ("2", "0")}
    assert runs["2"]["settings"]["guidance"] == 2.0 and runs["0"]["settings"]["guidance"] == 0
    assert runs["2"]["dynamics"]["delta_t_psnr"]["guidance"] == 2.0
    plain, guided = (runs[g]["dynamics"]["delta_t_psnr"]["frame_psnr"] for g in ("0", "2"))
    assert plain != guided


def test_eval_context_mask_changes_the_rollouts_and_is_recorded(setup) -> None:
    """--context-mask hides a share of every earlier frame's tokens in every rollout: other
    ΔtPSNR frames than without, recorded in the settings and the ΔtPSNR entry."""
    root = setup
    runs = {c: _quick_eval(root, "world", f"hidden{c}", "--context-mask", c) for c in ("0.5", "0")}
    assert runs["0.5"]["settings"]["context_mask"] == 0.5
    assert runs["0.5"]["dynamics"]["delta_t_psnr"]["context_mask"] == 0.5
    assert runs["0"]["settings"]["context_mask"] == 0.0
    hidden, whole = (runs[s]["dynamics"]["delta_t_psnr"]["frame_psnr"] for s in ("0.5", "0"))
    assert hidden != whole
    assert main(["eval", "--data", str(root / "data"), "--context-mask", "1"]) == 2


def test_eval_min_p_changes_the_rollouts_and_is_recorded(setup) -> None:
    """--min-p truncates every rollout's sampling: other ΔtPSNR frames than without, recorded
    in the settings and the ΔtPSNR entry, and the settings are then not the protocol's."""
    root = setup
    runs = {m: _quick_eval(root, "world", f"min_p{m}", "--min-p", m) for m in ("0.5", "0")}
    assert runs["0.5"]["settings"]["min_p"] == 0.5 and runs["0"]["settings"]["min_p"] == 0.0
    assert runs["0.5"]["dynamics"]["delta_t_psnr"]["min_p"] == 0.5
    assert "min_p=0.5" in runs["0.5"]["dynamics"]["delta_t_psnr"]["label"]
    truncated, whole = (runs[m]["dynamics"]["delta_t_psnr"]["frame_psnr"] for m in ("0.5", "0"))
    assert truncated != whole
    assert main(["eval", "--data", str(root / "data"), "--min-p", "2"]) == 2
