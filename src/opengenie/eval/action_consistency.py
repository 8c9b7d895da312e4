"""The protocol's ``actions`` section: which latent actions are in use, and how well they agree
with the true actions where the data has them (NMI, best code -> movement mapping)."""

from __future__ import annotations

from typing import Any

import numpy as np

from opengenie.eval.metrics import best_mapping_accuracy, key_assignment, key_names, nmi


def codes_in_use(
    codes: np.ndarray, num_actions: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(used codes, fraction of transitions per code): a code is in use when at least
    ``threshold`` of the inferred actions ``codes`` pick it."""
    counts = np.bincount(codes.reshape(-1), minlength=num_actions)
    fraction = counts / counts.sum()
    return np.flatnonzero(fraction >= threshold), fraction


def actions_section(
    codes: np.ndarray,
    labels: np.ndarray,
    group_names: list[str],
    num_actions: int,
    threshold: float,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(metrics.json's ``actions``, the action map or None) from inferred ``codes`` and true
    ``labels`` (same shape; -1 where unknown) grouped into ``group_names``."""
    used, fraction = codes_in_use(codes, num_actions, threshold)
    actions: dict[str, Any] = {
        "num_codes": num_actions,
        "codes_used": [int(c) for c in used],
        "code_fraction": [float(f) for f in fraction],
        "used_threshold": threshold,
        "transitions": int(codes.size),
    }
    known = labels >= 0
    if known.sum() == 0:
        actions.update(
            nmi=None, accuracy=None, reason="the data has no true actions for these clips"
        )
        return actions, None
    c, lab = codes[known], labels[known]
    acc, mapping = best_mapping_accuracy(c, lab)
    acc_1to1, _ = best_mapping_accuracy(c, lab, one_to_one=True)
    table = np.zeros((num_actions, len(group_names)), dtype=np.int64)  # (codes, groups)
    np.add.at(table, (c, lab), 1)
    keys = key_assignment(table, actions["codes_used"], group_names)
    action_map = {"names": key_names(keys), "keys": keys, "nmi": nmi(c, lab), "accuracy": acc}
    actions.update(
        nmi=action_map["nmi"],
        accuracy=acc,
        accuracy_one_to_one=acc_1to1,
        labelled_transitions=int(known.sum()),
        groups=group_names,
        mapping={str(code): group_names[g] for code, g in sorted(mapping.items())},
        keys=keys,
        contingency=table.tolist(),
    )
    return actions, action_map
