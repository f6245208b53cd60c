from __future__ import annotations

import itertools

import pytest

from pulsewire.core.states import TRANSITIONS, State, Trigger, mermaid_diagram, next_state

ILLEGAL = [pair for pair in itertools.product(State, Trigger) if pair not in TRANSITIONS]


@pytest.mark.parametrize(("start", "trigger"), list(TRANSITIONS))
def test_legal_transition_leads_to_table_target(start: State, trigger: Trigger) -> None:
    assert next_state(start, trigger) is TRANSITIONS[start, trigger]


@pytest.mark.parametrize(("start", "trigger"), ILLEGAL)
def test_illegal_transition_raises(start: State, trigger: Trigger) -> None:
    with pytest.raises(AssertionError, match="illegal transition"):
        next_state(start, trigger)


def test_dead_is_terminal() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] is State.DEAD]


def test_every_live_state_can_die() -> None:
    for state in State:
        if state is not State.DEAD:
            assert next_state(state, Trigger.DIE) is State.DEAD


def test_every_state_is_reachable_from_handshake() -> None:
    reached = {State.HANDSHAKE}
    frontier = [State.HANDSHAKE]
    while frontier:
        state = frontier.pop()
        for (start, _), target in TRANSITIONS.items():
            if start is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(State)


def test_closing_cannot_return_to_alive() -> None:
    assert {t for (s, _), t in TRANSITIONS.items() if s is State.CLOSING} == {State.DEAD}


def test_diagram_draws_every_transition() -> None:
    lines = mermaid_diagram().splitlines()
    for (start, trigger), target in TRANSITIONS.items():
        assert f"    {start.name} --> {target.name}: {trigger.value}" in lines
    assert len(lines) == len(TRANSITIONS) + 3
