import json

import pytest

from opengenie.config import PRESETS, GenieConfig, preset
from opengenie.errors import UserError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    config = preset(name)
    again = GenieConfig.from_json(config.to_json())
    assert again == config
    assert json.loads(again.to_json())["name"] == name


def test_coinrun_preset_keeps_the_papers_settings():
    c = preset("coinrun")
    assert c.lam.quantizer.codes == 6 and c.tokenizer.patch == 4 and c.lam.patch == 16
    assert (c.tokenizer.dim, c.tokenizer.enc_depth, c.dynamics.depth) == (512, 8, 12)
    assert c.tokenizer.quantizer.codes == 1024 and c.tokenizer.quantizer.code_dim == 32
    assert c.tokenizer_optim.lr == 3e-4 and c.tokenizer_optim.warmup_steps == 10_000
    assert c.dynamics_optim.lr == 3e-5 and c.dynamics_optim.min_lr == 3e-6
    assert c.dynamics_optim.warmup_steps == 5_000 and c.dynamics_optim.schedule == "cosine"
    assert tuple(c.dynamics_optim.betas) == (0.9, 0.9) and c.sampling.temperature == 1.0
    assert preset("tiny").lam.quantizer.codes == 8


def test_a_config_saved_before_temporal_window_keeps_full_temporal_attention():
    # Worlds saved before the option existed (the shipped one among them) must load as they
    # were trained, not with the tiny preset's current window.
    data = json.loads(preset("tiny").to_json())
    assert data["tokenizer"].pop("temporal_window") == 4
    assert GenieConfig.from_dict(data).tokenizer.temporal_window == 0


def test_overrides_take_effect_with_types():
    c = preset(
        "tiny",
        [
            "tokenizer.dim=64",
            "dynamics_optim.lr=1e-4",
            "dynamics.qk_norm=false",
            "dynamics.action_mode=token",
            "lam.quantizer.fsq_levels=3,2",
            "lam.quantizer.kind=fsq",
        ],
    )
    assert c.tokenizer.dim == 64 and c.dynamics_optim.lr == 1e-4
    assert c.dynamics.qk_norm is False and c.dynamics.action_mode == "token"
    assert c.lam.quantizer.fsq_levels == (3, 2) and c.num_actions == 6


@pytest.mark.parametrize(
    "override, message",
    [
        ("tokenizer.patch=7", "does not divide"),
        ("nope=1", "unknown config key"),
        ("tokenizer.dim=abc", "bad value"),
        ("dynamics.heads=3", "heads"),
        ("sampling.temperature=0", "temperature"),
        ("tokenizer", "key=value"),
        ("tokenizer.temporal_window=-1", "temporal_window"),
    ],
)
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(UserError, match=message):
        preset("tiny", [override])


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown preset"):
        preset("huge")
