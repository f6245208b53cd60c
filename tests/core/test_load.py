"""ServerLoad: admission at max_connections, and shedding to keep the inbound budget."""

from __future__ import annotations

import pytest

from pulsewire.core.load import ServerLoad
from pulsewire.core.policy import ServerLimits
from pulsewire.errors import PolicyError


def test_connections_beyond_the_limit_are_refused_until_one_goes() -> None:
    load: ServerLoad[str] = ServerLoad(ServerLimits(), max_connections=2)
    assert [load.admit() for _ in range(3)] == [True, True, False]
    assert (load.connections, load.refused) == (2, 1)
    load.release()
    assert load.admit()


def test_no_limit_admits_everyone() -> None:
    load: ServerLoad[int] = ServerLoad(ServerLimits(), max_connections=None)
    assert all(load.admit() for _ in range(10_000))


def test_the_largest_incomplete_holder_is_shed_first_and_only_as_many_as_needed() -> None:
    load: ServerLoad[str] = ServerLoad(ServerLimits(inbound_budget=1000), max_connections=None)
    assert load.hold("backlog", 400, 0) == []  # whole messages our application has not taken
    assert load.hold("dribbler", 300, 300) == []
    assert load.hold("small", 100, 50) == []
    assert load.held == 800
    # One more byte than the budget: the dribbler goes, though the backlog holds more.
    assert load.hold("newcomer", 201, 0) == ["dribbler"]
    assert (load.held, load.shed) == (701, 1)
    # Nobody incomplete is left big enough: then the largest backlog.
    assert load.hold("newcomer", 700, 0) == ["small", "newcomer"]
    assert load.held == 400
    assert load.peak_held == 1200  # held for a moment: the bytes had arrived


def test_a_connection_that_drains_stops_counting() -> None:
    load: ServerLoad[str] = ServerLoad(ServerLimits(inbound_budget=100), max_connections=None)
    load.hold("a", 90, 90)
    load.hold("a", 0, 0)
    assert load.held == 0
    assert load.hold("b", 100, 100) == []
    load.hold("b", 0, 0)  # dead: it holds nothing any more
    assert load.held == 0


def test_no_budget_sheds_nobody() -> None:
    load: ServerLoad[str] = ServerLoad(ServerLimits(inbound_budget=None), max_connections=None)
    assert load.hold("a", 2**40, 2**40) == []


@pytest.mark.parametrize(
    ("field", "value"), [("max_connections", 0), ("inbound_budget", -1), ("inbound_budget", 1.5)]
)
def test_server_limits_refuse_values_that_cannot_work(field: str, value: object) -> None:
    with pytest.raises(PolicyError, match=field):
        ServerLimits(**{field: value})  # type: ignore[arg-type]
