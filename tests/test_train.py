"""The trainer as a user runs it: exact resume, DDP on 2 CPU processes, Ctrl-C, wrong
checkpoints, --set and --init-from, validation with a best checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from opengenie.cli import main
from opengenie.models import World

from .conftest import sigint_default
from .test_cli import SMALL, _sets


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from opengenie.data import make_synthetic_dataset

    root = tmp_path_factory.mktemp("train-data")
    make_synthetic_dataset(root / "d", episodes=4, length=12, size=32)
    make_synthetic_dataset(root / "d", episodes=2, length=12, size=32, split="val")
    return root / "d"


def _train(phase, data, out, steps, *extra):
    args = ["train", phase, "--data", str(data), "--out", str(out), "--steps", str(steps)]
    return main(args + ["--no-tensorboard", *_sets(SMALL), *extra])


def _losses(run):
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {x["step"]: x["loss"] for x in lines if x["split"] == "train"}


@pytest.mark.parametrize("phase", ["tokenizer", "dynamics"])
def test_resume_gives_the_same_losses_as_an_uninterrupted_run(data, tmp_path, phase):
    extra = []
    if phase == "dynamics":
        assert _train("tokenizer", data, tmp_path / "tok", 2) == 0
        extra = ["--tokenizer", str(tmp_path / "tok")]
    assert _train(phase, data, tmp_path / "a", 6, "--save-every", "0", *extra) == 0
    assert _train(phase, data, tmp_path / "b", 3, "--save-every", "0", *extra) == 0
    assert _train(phase, data, tmp_path / "b", 6, "--resume", *extra) == 0
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    assert [a[s] for s in range(1, 7)] == [b[s] for s in range(1, 7)]


def test_validation_keeps_the_best_and_the_last_k(data, tmp_path):
    out = tmp_path / "tok"
    assert (
        _train("tokenizer", data, out, 6, "--val-every", "2", "--save-every", "2", "--keep", "2")
        == 0
    )
    vals = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [v for v in vals if v["split"] == "val"]
    assert [v["step"] for v in vals] == [2, 4, 6]
    best = json.loads((out / "best" / "best.json").read_text())
    assert best["recon_psnr"] == max(v["recon_psnr"] for v in vals)
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == ["step-00000004", "step-00000006"]


def test_set_and_init_from_take_effect(data, tmp_path):
    assert _train("tokenizer", data, tmp_path / "a", 2, "--seed", "5") == 0  # other init
    tiny_lr = ["--set", "tokenizer_optim.lr=1e-12"]
    assert (
        _train("tokenizer", data, tmp_path / "b", 1, "--init-from", str(tmp_path / "a"), *tiny_lr)
        == 0
    )
    assert _train("tokenizer", data, tmp_path / "c", 1, *tiny_lr) == 0
    a, b, c = (load_file(str(tmp_path / x / "model.safetensors")) for x in "abc")
    assert torch.allclose(a["enc_in.weight"], b["enc_in.weight"], atol=1e-6)
    assert not torch.allclose(a["enc_in.weight"], c["enc_in.weight"], atol=1e-3)
    config = json.loads((tmp_path / "c" / "config.json").read_text())["config"]
    assert config["tokenizer_optim"]["lr"] == 1e-12 and config["tokenizer"]["dim"] == 32


def test_wrong_checkpoints_are_one_line_errors(data, tmp_path, capsys):
    assert _train("tokenizer", data, tmp_path / "tok", 1) == 0
    assert _train("dynamics", data, tmp_path / "w", 1, "--tokenizer", str(tmp_path / "tok")) == 0
    capsys.readouterr()
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"format": "opengenie-agent", "config": {}}')
    cases = [
        (["--tokenizer", str(other)], "not a opengenie-tokenizer"),
        (["--tokenizer", str(data)], "it is a data set"),
    ]
    for extra, message in cases:
        assert _train("dynamics", data, tmp_path / "x", 1, *extra) == 2
        assert message in capsys.readouterr().err
    assert _train("tokenizer", data, tmp_path / "w", 2, "--resume") == 2
    assert "not a opengenie-tokenizer" in capsys.readouterr().err
    with pytest.raises(Exception, match="not a opengenie-world"):
        World.load(tmp_path / "tok")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "tokenizer.patch=7"], "does not divide"),
        (["--set", "frames=40"], "longer than every episode"),
        (["--set", "image_size=64"], "data frames are 32x32"),
        (["--set", "tokenizer.heads=0"], "heads and depths must be >= 1"),
        (["--set", "dynamics.depth=0"], "heads and depths must be >= 1"),
        (["--set", "tokenizer_optim.lr=nan"], "lr must be a finite number"),
        (["--set", "dynamics_optim.weight_decay=inf"], "weight_decay must be a finite number"),
        (["--set", "tokenizer_optim.batch_size=10000000000"], "needs at least"),
    ],
)
def test_bad_data_and_config_are_one_line_errors(data, tmp_path, capsys, extra, message):
    assert _train("tokenizer", data, tmp_path / "t", 1, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "t" / "checkpoints").exists()


def test_a_new_run_removes_staging_left_by_a_killed_write(data, tmp_path, capsys):
    """kill -9 during a checkpoint write leaves checkpoints/.step-*.<random>: the next run
    removes it (and the staging of best/ and of the latest weights), keeping the rest."""
    out = tmp_path / "tok"
    assert _train("tokenizer", data, out, 2, "--save-every", "1") == 0
    stale = [out / "checkpoints" / ".step-00000003.x1y2", out / ".best.k3j4", out / ".latest.q9"]
    for path in stale:
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"half")
    assert _train("tokenizer", data, out, 3, "--resume", "--save-every", "1") == 0
    assert not any(p.exists() for p in stale)
    assert "left by a checkpoint write that did not finish" in capsys.readouterr().out
    now = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert now[-1] == "step-00000003" and not any(n.startswith(".") for n in now)


def _cli(*args):
    return [sys.executable, "-m", "opengenie.cli", *args]


def test_ctrl_c_leaves_a_loadable_checkpoint(data, tmp_path):
    out = tmp_path / "tok"
    cmd = _cli("train", "tokenizer", "--data", str(data), "--out", str(out), "--steps", "100000")
    cmd += ["--no-tensorboard", "--save-every", "0", *_sets(SMALL)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=sigint_default
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        metrics = out / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-500:]
    ckpts = list((out / "checkpoints").iterdir())
    assert len(ckpts) == 1
    state = torch.load(ckpts[0] / "trainer_state.pt", weights_only=True)
    assert state["step"] >= 3
    assert load_file(str(out / "model.safetensors"))  # the latest weights are whole


def test_ctrl_c_inside_a_step_saves_the_loader_at_that_step(data, tmp_path, monkeypatch):
    """A batch drawn for a step that never finished must be drawn again on resume."""
    import threading

    from opengenie.models import VideoTokenizer

    forward, calls = VideoTokenizer.forward, []

    def interrupted(self, video):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return forward(self, video)

    monkeypatch.setattr(VideoTokenizer, "forward", interrupted)
    out = tmp_path / "tok"
    assert _train("tokenizer", data, out, 10, "--save-every", "0") == 130
    (ckpt,) = (out / "checkpoints").iterdir()
    state = torch.load(ckpt / "trainer_state.pt", weights_only=True)
    assert state["step"] == 3 and state["loader"]["batches"] == 3
    # The reader thread is stopped with the phase, also after an interrupt.
    assert not [t for t in threading.enumerate() if t.name.startswith("opengenie-prefetch")]


def test_ddp_two_cpu_processes(data, tmp_path):
    out = tmp_path / "tok"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(29500 + os.getpid() % 1000), "-m", "opengenie.cli"]
    cmd += ["train", "tokenizer", "--data", str(data), "--out", str(out), "--steps", "3"]
    cmd += ["--no-tensorboard", *_sets(SMALL + ["tokenizer.quantizer.dead_code_steps=1"])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    state = torch.load(
        out / "checkpoints" / "step-00000003" / "trainer_state.pt", weights_only=True
    )
    assert state["step"] == 3
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len([x for x in lines if '"train"' in x]) == 3  # only rank 0 logs
    World  # noqa: B018 (imported for the wrong-checkpoint test above)


def test_bf16_minutes_and_compile_options_take_effect(data, tmp_path, monkeypatch):
    assert _train("tokenizer", data, tmp_path / "fp32", 1, "--no-bf16") == 0
    assert _train("tokenizer", data, tmp_path / "bf16", 1, "--bf16") == 0
    assert _losses(tmp_path / "fp32")[1] != _losses(tmp_path / "bf16")[1]
    assert _train("tokenizer", data, tmp_path / "m", 100_000, "--minutes", "0.01") == 0
    assert 1 <= max(_losses(tmp_path / "m")) < 100_000  # stopped by the clock
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    assert _train("tokenizer", data, tmp_path / "c", 1, "--compile") == 0
    assert len(compiled) == 1


def test_val_data_option_picks_the_validation_set(data, tmp_path, capsys):
    from opengenie.data import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "train_only", episodes=2, length=12, size=32)
    other = tmp_path / "t"
    code = _train("tokenizer", tmp_path / "train_only", other, 2, "--val-every", "2")
    assert code == 0 and not (other / "best").exists()  # no val split: no validation
    out = tmp_path / "v"
    code = _train(
        "tokenizer", tmp_path / "train_only", out, 2, "--val-every", "2", "--val-data", str(data)
    )
    assert code == 0 and (out / "best" / "best.json").exists()
    capsys.readouterr()
    bad = _train("tokenizer", data, tmp_path / "x", 1, "--val-data", str(tmp_path / "train_only"))
    assert bad == 2 and "no val episodes" in capsys.readouterr().err


def test_tokenizer_temporal_window_trains_on_window_length_clips(data, tmp_path, monkeypatch):
    import opengenie.data as data_module
    from opengenie.models.tokenizer import VideoTokenizer
    from opengenie.train.checkpoint import read_tokenizer_config

    made = []
    real_loader = data_module.ClipLoader

    def spy(dataset, split="train", clip_frames=16, **kw):
        made.append((split, clip_frames))
        return real_loader(dataset, split, clip_frames=clip_frames, **kw)

    monkeypatch.setattr(data_module, "ClipLoader", spy)
    out = tmp_path / "tok"
    window = ["--set", "tokenizer.temporal_window=2", "--val-every", "1"]
    assert _train("tokenizer", data, out, 1, *window) == 0
    assert ("train", 2) in made  # training clips of the window's length
    assert ("val", 4) in made  # validation keeps the config's 4-frame clips, as eval does
    config = read_tokenizer_config(out)
    assert config.tokenizer.temporal_window == 2
    assert VideoTokenizer(config).encoder.window == 2


def test_dynamics_can_take_the_tokenizer_of_a_world(data, tmp_path):
    """--tokenizer WORLD: phase 2 starts from that World's tokenizer (e.g. the shipped one's)."""
    assert _train("tokenizer", data, tmp_path / "tok", 2, "--seed", "3") == 0
    assert _train("dynamics", data, tmp_path / "w1", 1, "--tokenizer", str(tmp_path / "tok")) == 0
    args = ("--tokenizer", str(tmp_path / "w1"), "--set", "lam.decoder_context=latest")
    assert _train("dynamics", data, tmp_path / "w2", 1, *args) == 0
    w1, w2 = World.load(tmp_path / "w1"), World.load(tmp_path / "w2")
    tok1, tok2 = w1.tokenizer.state_dict(), w2.tokenizer.state_dict()
    assert all(torch.equal(tok1[k], tok2[k]) for k in tok1)  # frozen in phase 2: the same
    assert w2.config.lam.decoder_context == "latest"  # the new run's own LAM settings


def test_frame_skip_strides_the_world_phase_and_not_the_tokenizer(tmp_path) -> None:
    """--set frame_skip=2: phase 2's clips take every 2nd frame (each step covers two game
    frames); phase 1 still sees consecutive frames; the run writes the skip into the World."""
    import numpy as np

    from opengenie.config import preset
    from opengenie.data import make_synthetic_dataset, open_dataset
    from opengenie.train import distributed
    from opengenie.train.phases import make_loader

    make_synthetic_dataset(tmp_path / "d", episodes=2, length=40, size=32)
    config = preset("tiny", ["image_size=32", "frame_skip=2"])
    single = distributed.DistInfo()
    ds = open_dataset(tmp_path / "d")
    for loader, stride in (
        (make_loader(str(tmp_path / "d"), config, 2, 0, single, prefetch=False), 2),
        (make_loader(str(tmp_path / "d"), config, 2, 0, single, "train", 4, False, 1), 1),
    ):
        b = next(loader)
        e, s = int(b["episode"][0]), int(b["start"][0])
        t = b["frames"].shape[1]
        want = ds.frames(e)[s : s + (t - 1) * stride + 1 : stride]
        np.testing.assert_array_equal(b["frames"][0].numpy(), want)
    base = ["--data", str(tmp_path / "d"), "--steps", "1", "--no-tensorboard", *_sets(SMALL)]
    assert (
        main(["train", "all", "--out", str(tmp_path / "run"), *base, "--set", "frame_skip=2"]) == 0
    )
    assert World.load(tmp_path / "run").config.frame_skip == 2


def test_stopping_before_the_cosine_schedule_ends_says_so(data, tmp_path, capsys):
    """--steps stops a run; the schedule spans <phase>_optim.steps: a run that stops early is
    told its learning rate will not have decayed, and how to make it."""
    assert _train("tokenizer", data, tmp_path / "a", 2, "--set", "tokenizer_optim.steps=50") == 0
    out = capsys.readouterr().out
    assert "cosine schedule spans tokenizer_optim.steps=50" in out
    assert "--set tokenizer_optim.steps=2" in out
    assert _train("tokenizer", data, tmp_path / "b", 2, "--set", "tokenizer_optim.steps=2") == 0
    assert "cosine schedule spans" not in capsys.readouterr().out
