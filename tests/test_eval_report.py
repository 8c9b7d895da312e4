"""The report writer: strict JSON, frame strips, the inline SVG plot, atomic writes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from opengenie.eval.metrics import key_names
from opengenie.eval.report import (
    action_label,
    metrics_json,
    strip,
    svg_plot,
)


def test_metrics_json_is_strict_and_maps_nan_to_null() -> None:
    text = metrics_json({"a": math.nan, "b": [1.0, math.inf], "c": {"d": np.float32(2.5)}})
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert data == {"schema": "opengenie-eval/1", "a": None, "b": [1.0, None], "c": {"d": 2.5}}


def test_strip_places_frames_side_by_side() -> None:
    frames = np.stack([np.full((4, 5, 3), v, dtype=np.uint8) for v in (10, 20, 30)])
    image = np.asarray(strip(frames, scale=2))
    assert image.shape == (8, 2 * (3 * 5 + 2 * 2), 3)
    assert image[0, 0, 0] == 10 and image[0, 2 * (5 + 2), 0] == 20 and image[0, 2 * 5, 0] == 255


def test_svg_plot_has_one_point_per_finite_value() -> None:
    svg = svg_plot([("a", [1, 2, 3], [10.0, math.nan, 12.0])], "x", "y", [("ref", 11.0)])
    assert svg.startswith("<svg") and svg.count("<circle") == 2 and "stroke-dasharray" in svg
    assert "(nothing to plot)" in svg_plot([("a", [1], [math.nan])], "x", "y")


def test_action_labels_use_the_one_to_one_key_pairing() -> None:
    # The majority mapping calls every code "none"; the labels must follow the keys play shows.
    actions = {"mapping": {"0": "none", "1": "none", "2": "none"}, "keys": {"left": 1, "none": 2}}
    names = key_names(actions["keys"])
    labels = [action_label(code, names) for code in range(3)]
    assert labels == ["action 0", "action 1 (left)", "action 2 (none)"]
