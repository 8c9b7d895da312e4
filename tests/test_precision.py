"""bf16 only where it pays: `--precision auto` follows a measured matmul test (precision.py)."""

from __future__ import annotations

import pytest
import torch

from opengenie import precision
from opengenie.precision import resolve_precision


def test_explicit_precisions_are_kept_and_bad_ones_refused() -> None:
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")


@pytest.mark.parametrize("faster", [True, False])
def test_auto_takes_bf16_only_where_it_measured_faster(monkeypatch, faster) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_is_faster", lambda: faster)
    assert resolve_precision("auto", "cpu") == ("bf16" if faster else "fp32")


def test_the_matmul_test_gives_an_answer_once_per_process() -> None:
    first = precision.cpu_bf16_is_faster()
    assert isinstance(first, bool) and precision.cpu_bf16_is_faster() is first


@pytest.mark.parametrize(
    ("choice", "faster", "dtype"),
    [
        ("auto", True, torch.bfloat16),
        ("auto", False, torch.float32),
        ("fp32", True, torch.float32),
        ("bf16", False, torch.bfloat16),
    ],
)
def test_play_serves_the_world_at_the_chosen_precision(monkeypatch, choice, faster, dtype):
    from opengenie.cli import main
    from opengenie.play import cli as play_cli

    monkeypatch.setattr(precision, "cpu_bf16_is_faster", lambda: faster)
    served = {}

    async def no_server(server, host, port, open_browser):  # what play would serve
        served["dtype"] = server.world.dynamics_dtype

    monkeypatch.setattr(play_cli, "_serve", no_server)
    assert main(["play", "--no-browser", "--precision", choice]) == 0
    assert served["dtype"] == dtype
