import json
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

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
        ("sampling.guidance=-1", "guidance"),
        ("dynamics.clean_context=1", "clean_context"),
        ("dynamics.context_noise=1", "context_noise"),
        ("dynamics.context_noise_neighbours=-1", "context_noise_neighbours"),
        ("dynamics.context_noise_neighbours=1024", "context_noise_neighbours"),
        ("dynamics.context_noise_neighbours=4", "needs dynamics.context_noise"),
        ("dynamics.changed_weight=0", "changed_weight"),
        ("sampling.context_mask=0.96", "context_mask"),
        ("sampling.min_p=1.5", "min_p"),
        ("sampling.min_p=-0.1", "min_p"),
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


def _leaf_keys(data: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in data.items():
        if isinstance(value, dict):
            keys += _leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


TINY_KEYS = _leaf_keys(preset("tiny").to_dict())
ODD_VALUES = (
    st.sampled_from(
        ["0", "-1", "nan", "inf", "-inf", "1e309", "1e-320", "", "true", "3.5", "[1,2]", "x"]
    )
    | st.text(max_size=8)
    | st.integers(-(2**64), 2**64).map(str)
    | st.floats(allow_subnormal=False).map(repr)
)


@settings(max_examples=300, deadline=None)
@example(key="image_size", value="1e309")  # found by this test: int(float) overflowed
@given(
    key=st.sampled_from(TINY_KEYS) | st.text(max_size=12),
    value=ODD_VALUES,
)
def test_any_set_override_is_a_valid_config_or_one_user_error(key, value):
    """The --set layer (issue 17): whatever key=value a user types, the result is a config that
    passed validation or a UserError, never another exception (ZeroDivisionError, a torch
    error later, ...); a config that passes has finite floats and positive sizes."""
    try:
        config = preset("tiny").with_overrides([f"{key}={value}"])
    except UserError:
        return
    floats = [v for v in _flat_values(config.to_dict()) if isinstance(v, float)]
    assert all(math.isfinite(v) for v in floats)
    for part in (config.tokenizer, config.lam, config.dynamics):
        assert part.dim >= 1 and part.heads >= 1 and part.dim % part.heads == 0


def _flat_values(data: dict) -> list:
    out = []
    for value in data.values():
        if isinstance(value, dict):
            out += _flat_values(value)
        elif isinstance(value, (list, tuple)):
            out += list(value)
        else:
            out.append(value)
    return out
