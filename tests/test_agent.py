"""Agents from latent actions (issue 15): the expert, the mapping, training and evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("procgen", reason="the coinrun extra (procgen-mirror) is not installed")

from opengenie.agent.agent import Agent  # noqa: E402
from opengenie.agent.evaluate import play_expert, play_levels, wilson_interval  # noqa: E402
from opengenie.agent.expert import ONWARD, PERIOD, PREFERENCE, SearchExpert  # noqa: E402
from opengenie.agent.game import coinrun_env, hold  # noqa: E402
from opengenie.agent.mapping import LatentToReal  # noqa: E402
from opengenie.agent.policy import FramePolicy, context_indices  # noqa: E402
from opengenie.cli import main  # noqa: E402
from opengenie.data.coinrun import MOVEMENT_ACTION  # noqa: E402
from opengenie.errors import UserError  # noqa: E402

RIGHT_UP = MOVEMENT_ACTION["right+jump"]
# Easy test level on which always RIGHT+UP dies and the planner reaches the coin (found by
# playing levels 200000-200029 with both).
HARD_FOR_RIGHT_UP = 200002


def _always(action):
    return lambda frames: np.full(len(frames), action)


def test_expert_solves_a_level_that_right_up_fails():
    right_up, _ = play_levels(_always(RIGHT_UP), [HARD_FOR_RIGHT_UP], "easy", 1, 1)
    assert not right_up[0]
    assert play_expert([HARD_FOR_RIGHT_UP], "easy", seed=0)[0]


def test_expert_leaves_right_up_only_where_right_up_would_die():
    """The onward check: wherever the expert does anything but run right and jump, doing that
    for the period and ONWARD frames after it would have ended the episode without the coin."""
    env = coinrun_env(HARD_FOR_RIGHT_UP, "easy")
    expert = SearchExpert(env, np.random.default_rng(0))
    right_up, deviations = expert.actions[0], 0
    for _ in range(250):
        state = env.get_state()
        action = expert.choose()
        if action != right_up:
            deviations += 1
            _, ended, solved = hold(env, right_up, PERIOD + ONWARD)
            assert ended and not solved
            env.set_state(state)
        _, ended, _ = hold(env, action, PERIOD)
        if ended:
            break
    assert deviations > 0  # RIGHT+UP fails this level, so the expert must leave it somewhere


BACK_OFF = ("right+jump", "left+jump", "left", "none", "jump", "right")


def test_expert_breaks_ties_by_its_preference():
    """Where RIGHT+UP would die, the expert takes the first movement of its preference among
    the best-scored ones; two preferences score the same rollouts, so they differ only in ties."""
    env = coinrun_env(HARD_FOR_RIGHT_UP, "easy")
    default = SearchExpert(env, np.random.default_rng(0))
    differ = 0
    for _ in range(250):  # the default expert's episode; at each state where it plans:
        state = env.get_state()
        action = default.choose()
        if action != default.actions[0]:
            seed, picked = int(default.rng.integers(1 << 30)), []
            for preference in (PREFERENCE, BACK_OFF):
                env.set_state(state)
                expert = SearchExpert(env, np.random.default_rng(seed), preference=preference)
                choice = expert.choose()
                # score every movement on the rollouts it drew (its first draw from the seed)
                moves = np.random.default_rng(seed).choice(
                    len(expert.rollout_p),
                    size=(expert.rollouts, expert.horizon // PERIOD + 1),
                    p=expert.rollout_p,
                )
                values = [expert._value(state, a, moves) for a in expert.actions]
                assert choice == expert.actions[int(np.argmax(values))]
                picked.append(choice)
            differ += picked[0] != picked[1]
            env.set_state(state)
        _, ended, _ = hold(env, action, PERIOD)
        if ended:
            break
    assert differ > 0  # somewhere a tie, and the preference decided it
    with pytest.raises(ValueError, match="RIGHT\\+UP first"):
        SearchExpert(env, np.random.default_rng(0), preference=BACK_OFF[::-1])


def test_data_expert_ties_option_orders_the_recorded_experts_ties(tmp_path):
    """`opengenie data coinrun --expert-ties` reaches the recorded expert: on a level where
    ties decide (above), the back-off order records another episode than the default."""
    from opengenie.data.storage import open_dataset

    base = ["data", "coinrun", "--policy", "expert", "--mode", "easy", "--split", "test"]
    base += ["--levels", f"{HARD_FOR_RIGHT_UP}:{HARD_FOR_RIGHT_UP + 1}", "--workers", "1"]
    assert main([*base, "--out", str(tmp_path / "default")]) == 0
    assert main([*base, "--out", str(tmp_path / "back"), "--expert-ties", ",".join(BACK_OFF)]) == 0
    default = open_dataset(tmp_path / "default").actions(0)
    back = open_dataset(tmp_path / "back").actions(0)
    assert len(default) != len(back) or (default != back).any()
    assert (
        main([*base, "--out", str(tmp_path / "same"), "--expert-ties", ",".join(PREFERENCE)]) == 0
    )
    assert (open_dataset(tmp_path / "same").actions(0) == default).all()
    # Each dataset says which tie order recorded it (the default's is the expert's own).
    for name, order in [("default", PREFERENCE), ("back", BACK_OFF)]:
        (recording,) = open_dataset(tmp_path / name).source_info["procgen:coinrun:easy"][
            "recordings"
        ]
        assert recording["policy"] == "expert" and recording["expert_ties"] == list(order)


@pytest.mark.parametrize(
    "extra",
    [
        ["--policy", "random", "--expert-ties", ",".join(BACK_OFF)],  # not the expert
        ["--policy", "expert", "--expert-ties", "right+jump,left"],  # not all six
        ["--policy", "expert", "--expert-ties", ",".join(BACK_OFF[::-1])],  # not RIGHT+UP first
    ],
)
def test_data_expert_ties_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra):
    out = tmp_path / "data"
    assert main(["data", "coinrun", "--out", str(out), "--levels", "1:2", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "--expert-ties" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_expert_is_deterministic_given_its_seed():
    def actions(seed):
        env = coinrun_env(HARD_FOR_RIGHT_UP, "easy")
        expert = SearchExpert(env, np.random.default_rng(seed))
        out = []
        for _ in range(6):
            out.append(expert.choose())
            hold(env, out[-1], 4)
        return out

    assert actions(3) == actions(3)


def test_play_levels_matches_playing_each_level_alone():
    levels = [200000, 200001, HARD_FOR_RIGHT_UP]
    batch, _ = play_levels(_always(RIGHT_UP), levels, "easy", 1, 1)
    alone = []
    for level in levels:
        env = coinrun_env(level, "easy")
        while True:
            _, ended, won = hold(env, RIGHT_UP, 1)
            if ended:
                alone.append(won)
                break
    assert batch.tolist() == alone


def test_play_levels_records_the_first_episode():
    _, movie = play_levels(_always(RIGHT_UP), [200000], "easy", 4, 2, record=True)
    assert len(movie) > 10 and movie[0].shape == (64, 64, 3)
    assert not np.array_equal(movie[0], movie[-1])  # the player ran through the level


def test_wilson_interval():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] > 0.6
    assert wilson_interval(0, 10)[0] == 0.0


def test_dictionary_draws_the_actions_seen_with_each_code():
    codes = np.array([0, 0, 0, 1, 1])
    actions = np.array([7, 7, 8, 1, 1])
    m = LatentToReal.fit(codes, actions, num_codes=3)
    rng = np.random.default_rng(0)
    drawn = m.sample(np.zeros(3000, dtype=np.int64), rng)
    assert set(drawn.tolist()) == {7, 8}
    assert np.mean(drawn == 7) == pytest.approx(2 / 3, abs=0.03)
    assert set(m.sample(np.ones(100, dtype=np.int64), rng).tolist()) == {1}
    unseen = m.sample(np.full(3000, 2), rng)  # a code with no label: any labelled action
    assert set(unseen.tolist()) == {1, 7, 8}


def test_decoder_mapping_follows_the_labels():
    codes = np.array([0] * 20 + [1] * 20)
    actions = np.array([7] * 20 + [1] * 20)
    vectors = torch.eye(3)
    m = LatentToReal.fit(codes, actions, 3, kind="decoder", code_vectors=vectors)
    assert m.kind == "decoder"
    assert m.probs[0].argmax() == 7 and m.probs[1].argmax() == 1
    assert np.allclose(m.probs.sum(1), 1.0)
    again = LatentToReal.from_json(json.loads(json.dumps(m.to_json())))
    assert np.allclose(again.probs, m.probs, atol=1e-5) and again.kind == "decoder"


def test_policy_shapes_and_context():
    policy = FramePolicy(classes=8, context=4)
    frames = torch.randint(0, 255, (3, 4, 64, 64, 3), dtype=torch.uint8)
    assert policy(frames).shape == (3, 8)
    assert context_indices(0, 4) == [0, 0, 0, 0]
    assert context_indices(5, 4) == [2, 3, 4, 5]


@pytest.fixture(scope="module")
def expert_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("expert") / "data"
    args = ["data", "coinrun", "--out", str(out), "--policy", "expert", "--mode", "easy"]
    assert main([*args, "--levels", "20000:20006", "--workers", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def trained(expert_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("agent") / "a"
    args = ["agent", "train", "--data", str(expert_data), "--out", str(out)]
    assert main([*args, "--labels", "5", "--steps", "30"]) == 0
    return out


def test_expert_data_keeps_the_actions_and_the_mode(expert_data):
    from opengenie.data.storage import open_dataset

    data = open_dataset(expert_data)
    assert data.sources == ["procgen:coinrun:easy"]
    acts = data.actions(0)
    held = acts[: (len(acts) // 4) * 4].reshape(-1, 4)
    assert (held == held[:, :1]).all()  # one movement per 4-frame period


def test_agent_train_writes_a_loadable_agent(trained):
    agent = Agent.load(trained)
    info = agent.info
    assert info["labels"] == 5 and info["expert_episodes"] == 6 and info["train_steps"] == 30
    assert info["labels_used"] == 5
    assert agent.frame_skip == 4 and agent.oracle is not None
    # every transition of the video is counted once in the code x real action table
    table = info["code_actions"]
    assert sum(sum(row.values()) for row in table.values()) == info["oracle"]["transitions"]
    # 5 labelled transitions: at most 5 distinct real actions anywhere in the mapping
    assert 1 <= int((agent.mapping.probs.sum(0) > 0).sum()) <= 5
    frames = torch.zeros(2, agent.policy.context, 64, 64, 3, dtype=torch.uint8)
    gen, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    assert agent.act(frames, gen, rng).shape == (2,)


def test_agent_train_options_take_effect(expert_data, tmp_path):
    out = tmp_path / "b"
    args = ["agent", "train", "--data", str(expert_data), "--out", str(out), "--steps", "5"]
    assert main([*args, "--labels", "all", "--mapping", "decoder", "--no-oracle"]) == 0
    agent = Agent.load(out)
    assert agent.oracle is None and agent.mapping.kind == "decoder"
    assert agent.info["labels"] == "all" and agent.info["train_steps"] == 5
    assert agent.info["labels_used"] == agent.info["latent_policy"]["transitions"]


def test_agent_eval_reports_players_json_and_gif(trained, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["agent", "eval", "--agent", str(trained), "--episodes", "2", "--out", str(out)]
    assert main([*args, "--players", "agent,right+up", "--seeds", "2", "--mode", "hard"]) == 0
    report = json.loads((out / "agent_eval.json").read_text())
    assert report["mode"] == "hard" and report["levels"] == [200000, 200002]
    assert set(report["players"]) == {"agent", "right+up"}
    assert report["players"]["agent"]["episodes"] == 4  # 2 levels x 2 seeds
    assert report["players"]["right+up"]["episodes"] == 2  # deterministic: once
    assert np.array(report["players"]["agent"]["solved"]).shape == (2, 2)  # (seeds, levels)
    agent = np.array(report["players"]["agent"]["solved"]).mean(0)
    right_up = np.array(report["players"]["right+up"]["solved"][0])
    paired = report["players"]["agent"]["vs_right_up"]
    assert paired["difference"] == pytest.approx((agent - right_up).mean())
    assert "vs_right_up" not in report["players"]["right+up"]
    assert (out / "episode.gif").stat().st_size > 0
    assert "right+up" in capsys.readouterr().out
    # levels the expert was recorded on are played, with a warning
    args = ["agent", "eval", "--agent", str(trained), "--levels", "20000:20001"]
    assert main([*args, "--players", "right+up", "--out", str(out)]) == 0
    assert "overlap the expert's training levels 20000:20006" in capsys.readouterr().err


def test_paired_difference_counts_the_levels_where_players_differ():
    """On 100 levels where the baseline solves 60 and the player those 60 and 10 more, the paired
    difference is 0.10 with an interval above 0 (the two shares' Wilson intervals overlap)."""
    from opengenie.agent.evaluate import paired_difference

    baseline = np.zeros((1, 100), dtype=bool)
    baseline[0, :60] = True
    player = np.zeros((2, 100), dtype=bool)
    player[:, :70] = True
    result = paired_difference(player, baseline)
    assert result["difference"] == pytest.approx(0.10)
    assert 0.0 < result["ci95"][0] < 0.10 < result["ci95"][1]
    assert wilson_interval(70, 100)[0] < wilson_interval(60, 100)[1]
    same = paired_difference(baseline, baseline)
    assert same["difference"] == 0.0 and same["ci95"] == [0.0, 0.0]
    worse = paired_difference(~baseline, baseline)  # solves exactly the other 40
    assert worse["difference"] == pytest.approx(-0.20) and worse["ci95"][1] < 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--players", "agent,nobody"], "unknown player nobody"),
        (["--levels", "5:3"], "--levels"),
        (["--episodes", "0"], "--episodes"),
    ],
)
def test_agent_eval_bad_options_are_one_line(trained, tmp_path, capsys, extra, message):
    args = ["agent", "eval", "--agent", str(trained), "--out", str(tmp_path / "e"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_agent_load_refuses_a_world_and_a_damaged_config(tmp_path):
    from opengenie.models.world import SHIPPED_WORLD

    with pytest.raises(UserError, match="not an agent"):
        Agent.load(SHIPPED_WORLD)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"format": "opengenie-agent", "policy": {}}')
    with pytest.raises(UserError, match="not an agent config"):
        Agent.load(bad)


def test_agent_curve_writes_each_label_count(expert_data, tmp_path, capsys):
    out = tmp_path / "curve"
    args = ["agent", "curve", "--data", str(expert_data), "--out", str(out), "--steps", "3"]
    assert (
        main([*args, "--labels", "5,all", "--seeds", "2", "--episodes", "2", "--save-agents", "5"])
        == 0
    )
    curve = json.loads((out / "label_curve.json").read_text())
    assert list(curve["agent"]) == ["5", "all"] and curve["seeds"] == 2
    assert len(curve["agent"]["5"]["per_seed"]) == 2 and len(curve["oracle"]["per_seed"]) == 2
    assert curve["levels"] == [200000, 200002] and curve["mode"] == "easy"
    assert set(curve) >= {"right+up", "random"}
    svg = (out / "label_curve.svg").read_text()
    assert svg.startswith("<svg") and ">all<" in svg and ">5<" in svg
    assert "labels" in capsys.readouterr().out
    for seed in (0, 1):
        saved = Agent.load(out / f"agent-seed{seed}")
        assert saved.info["labels"] == 5 and saved.info["seed"] == seed
    assert main([*args, "--labels", "5", "--save-agents", "7"]) == 2  # not a curve count


def test_svg_plot_names_the_ticks_it_is_given():
    from opengenie.eval.report import svg_plot

    svg = svg_plot([("a", [0.0, 1.0], [10.0, 20.0])], "x", "y", xticks={0.0: "zero", 1.0: "one"})
    assert ">zero<" in svg and ">one<" in svg
    default = svg_plot([("a", [0.0, 1.0], [10.0, 20.0])], "x", "y")
    assert ">zero<" not in default and ">1<" in default


def test_code_purity():
    from opengenie.agent.train import code_purity

    assert code_purity([np.array([0, 0, 1])], [np.array([7, 7, 1])]) == 1.0
    # one code for everything: purity is the majority action's share
    assert code_purity([np.array([0, 0, 0, 0])], [np.array([7, 7, 7, 1])]) == 0.75


def test_code_action_counts_name_each_code_by_its_real_actions():
    from opengenie.agent.train import code_action_counts, movement_table
    from opengenie.data.coinrun import MOVEMENT_ACTION

    right, jump = MOVEMENT_ACTION["right"], MOVEMENT_ACTION["jump"]
    codes = [np.array([0, 0, 2]), np.array([2, 0])]
    actions = [np.array([right, right, jump]), np.array([jump, 3])]
    counts = code_action_counts(codes, actions, num_codes=4)
    assert counts.shape == (4, 15) and counts.sum() == 5
    assert counts[0, right] == 2 and counts[0, 3] == 1 and counts[2, jump] == 2
    # codes never seen are left out; a non-movement action keeps its id
    assert movement_table(counts) == {"0": {"action 3": 1, "right": 2}, "2": {"jump": 2}}


def test_expert_policy_is_coinrun_only(tmp_path, capsys):
    args = ["data", "coinrun", "--out", str(tmp_path / "d"), "--episodes", "1"]
    assert main([*args, "--game", "ninja", "--policy", "expert"]) == 2
    err = capsys.readouterr().err
    assert "CoinRun only" in err and "Traceback" not in err


def test_data_mode_takes_effect(tmp_path):
    from opengenie.data.storage import open_dataset

    out = tmp_path / "d"
    args = ["data", "coinrun", "--out", str(out), "--levels", "7:8", "--max-steps", "5"]
    assert main([*args, "--mode", "hard", "--workers", "1"]) == 0
    assert main([*args, "--mode", "easy", "--workers", "1"]) == 0  # same level, other source
    data = open_dataset(out)
    assert sorted(data.sources) == ["procgen:coinrun:easy", "procgen:coinrun:hard"]
    assert not np.array_equal(data.frames(0)[0], data.frames(1)[0])  # easy looks different


def test_shipped_agent_plays_coinrun(tmp_path):
    out = tmp_path / "eval"
    args = ["agent", "eval", "--episodes", "20", "--players", "agent,random", "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "agent_eval.json").read_text())
    assert report["agent"] == "shipped coinrun_agent" and report["agent_info"]["labels"] == 200
    # Easy levels 200000-200019, seed 0: the agent runs for the coin; random mostly does not.
    players = report["players"]
    assert players["agent"]["success"] >= players["random"]["success"] + 0.2


@pytest.mark.parametrize("damage", ["missing weights", "truncated weights", "not json"])
def test_a_damaged_agent_is_one_line(tmp_path, capsys, damage):
    import shutil

    from opengenie.agent.agent import SHIPPED_AGENT

    agent = tmp_path / "agent"
    shutil.copytree(SHIPPED_AGENT, agent)
    weights = agent / "model.safetensors"
    if damage == "missing weights":
        weights.unlink()
    elif damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        (agent / "config.json").write_text("{not json")
    args = ["agent", "eval", "--agent", str(agent), "--episodes", "1", "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("opengenie: error:") and "Traceback" not in err


@pytest.mark.parametrize("labels", ["0", "-3", "many", "nan"])
def test_agent_train_bad_labels_are_one_line(tmp_path, capsys, labels):
    args = ["agent", "train", "--data", str(tmp_path), "--out", str(tmp_path / "a")]
    assert main([*args, "--labels", labels]) == 2
    err = capsys.readouterr().err
    assert "--labels" in err and "Traceback" not in err
