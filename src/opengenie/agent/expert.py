"""An expert CoinRun player that plans with the game's own save states (no learning).

Every `period` frames it first asks whether running right and jumping, for this period and the
`onward` frames after it, keeps the player alive; if so it does that, with no search. Only where
it would die does it plan: it tries each of CoinRun's six movements for one period from the current
state, then continues each with a few random, right-leaning rollouts of `horizon` frames, and
keeps the movement whose best rollout is best: the coin reached > still alive > dead. The game
is deterministic given its state, so the best rollout is a continuation the expert could really
play. Ties go to the earlier movement in `PREFERENCE` (run right and jump), so that the expert's
choices are consistent enough to be imitated from frames. The onward check makes them more so:
planning at every step, the expert also left RIGHT+UP wherever a random rollout happened to find
the coin sooner, choices no clone could see a reason for; with it, it leaves RIGHT+UP only for a
danger about 32 px ahead, inside the 64-px view (docs/AGENTS.md).

This is the "or otherwise" of issue 15's expert: PPO's usual CoinRun budget (25M frames in the
Procgen benchmark) is days of this 2-core CPU; the planner needs no training and about 0.2 s
per level.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from opengenie.agent.game import hold
from opengenie.data.coinrun import MOVEMENT_ACTION

PREFERENCE = ("right+jump", "right", "jump", "none", "left+jump", "left")  # ties: the first
# The rollouts' movements and how often each is drawn: mostly onward, sometimes back or waiting.
# The first is RIGHT+UP, which the onward check plays.
ROLLOUT_WEIGHTS = {
    "right+jump": 0.35,
    "right": 0.25,
    "jump": 0.1,
    "none": 0.1,
    "left+jump": 0.1,
    "left": 0.1,
}
PERIOD, HORIZON, ROLLOUTS = 4, 64, 6
# The onward check: the expert runs right and jumps wherever doing so for this period and the
# ONWARD frames after it keeps the player alive, and plans only elsewhere.
ONWARD = 32


def check_preference(preference: tuple[str, ...]) -> None:
    """ValueError unless `preference` lists each movement once, RIGHT+UP first (what the onward
    check plays)."""
    if sorted(preference) != sorted(PREFERENCE) or preference[0] != "right+jump":
        raise ValueError(
            f"the expert's preference must list each of {','.join(PREFERENCE)} once, "
            f"RIGHT+UP first; got {','.join(preference)}"
        )


class SearchExpert:
    """Chooses a movement (a Procgen action id) for each `period` frames of `env`; `onward` 0
    plans at every step (the expert before 2026-12-05 b); `preference` orders the movements
    that tie (RIGHT+UP first: the onward check's choice)."""

    def __init__(
        self,
        env: Any,
        rng: np.random.Generator,
        period: int = PERIOD,
        horizon: int = HORIZON,
        rollouts: int = ROLLOUTS,
        onward: int = ONWARD,
        preference: tuple[str, ...] = PREFERENCE,
    ) -> None:
        check_preference(preference)
        self.env, self.rng = env, rng
        self.period, self.horizon, self.rollouts = period, horizon, rollouts
        self.onward = onward
        self.actions = [MOVEMENT_ACTION[name] for name in preference]
        self.rollout_actions = [MOVEMENT_ACTION[name] for name in ROLLOUT_WEIGHTS]
        self.rollout_p = np.array(list(ROLLOUT_WEIGHTS.values()))

    def choose(self) -> int:
        """Plan from the env's current state (restored afterwards); returns the action id.

        Every movement is scored on the same random rollouts (common random numbers), so two
        movements that lead to the same state score the same and the preference decides: the
        expert's choices then follow from what it sees, not from the luck of its rollouts."""
        state = self.env.get_state()
        if self.onward:
            onward = np.zeros(1 + self.onward // self.period, dtype=int)  # RIGHT+UP throughout
            if self._rollout(onward) >= 0.0:  # the coin, or still alive
                self.env.set_state(state)
                return self.actions[0]
        steps = self.horizon // self.period + 1
        moves = self.rng.choice(len(self.rollout_p), size=(self.rollouts, steps), p=self.rollout_p)
        values = [self._value(state, action, moves) for action in self.actions]
        self.env.set_state(state)
        return self.actions[int(np.argmax(values))]  # argmax keeps the first of equal values

    def _value(self, state: list, action: int, moves: np.ndarray) -> float:
        self.env.set_state(state)
        _, ended, solved = hold(self.env, action, self.period)
        if ended:
            return 1.0 if solved else -1.0
        after = self.env.get_state()
        best = -1.0
        for r in range(self.rollouts):
            if r:
                self.env.set_state(after)
            best = max(best, self._rollout(moves[r]))
            if best >= 1.0:  # the coin is reached: no rollout can make this movement better
                break
        return best

    def _rollout(self, moves: np.ndarray) -> float:
        """Play `moves` (indices into ROLLOUT_WEIGHTS), a period each: 1 if the coin is
        reached, 0 if the player is still alive, -1 if it died. (Scoring sooner coins higher
        made the expert leave its preference for a frame or two saved: 0.31 of its steps
        changed action against 0.16, with the same success, and it was harder to imitate.)"""
        for m in moves:
            _, ended, solved = hold(self.env, self.rollout_actions[m], self.period)
            if ended:
                return 1.0 if solved else -1.0
        return 0.0


class ExpertPolicy:
    """The expert as a per-frame policy (for `opengenie data`): a movement chosen every
    `PERIOD` frames and held in between."""

    def __init__(
        self, env: Any, rng: np.random.Generator, preference: tuple[str, ...] = PREFERENCE
    ) -> None:
        self.expert = SearchExpert(env, rng, preference=preference)
        self.left, self.action = 0, MOVEMENT_ACTION["none"]

    def __call__(self) -> int:
        if self.left == 0:
            self.action, self.left = self.expert.choose(), PERIOD
        self.left -= 1
        return self.action
