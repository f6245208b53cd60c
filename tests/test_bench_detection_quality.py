"""benchmarks/detection_quality.py: the smoke run works and its numbers are sane.

The study itself takes minutes; its ``--smoke`` mode (three paths, one population, three
policies, a few simulated minutes each) runs in about a second, so the script cannot rot
unnoticed.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(scope="module")
def quality(import_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return import_benchmark("detection_quality")


@pytest.fixture(scope="module")
def model(import_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return import_benchmark("_quality_model")


@pytest.fixture(scope="module")
def smoke(quality: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    results = tmp_path_factory.mktemp("results") / "RESULTS.md"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        study = quality.main(["--smoke", "--results", str(results)])
    assert not results.exists(), "--smoke must not write the results file"
    return study, out.getvalue()


def test_smoke_report_has_one_table_per_scenario(
    quality: ModuleType, smoke: tuple[Any, str]
) -> None:
    study, text = smoke
    assert len(study.cells) == 3 * 3
    assert text.count("### ") == 5  # three paths, one population and the conclusion
    assert "### LAN (RTT 0.2 ms, no jitter), loss 0%" in text
    assert "### jittery WAN (RTT 20 ms + 0-100 ms per direction), loss 10%" in text
    assert "changing: 10% for the last 5 min of every 10" in text
    assert "### Population: mixed paths (LAN 0%, jittery WAN 10%; one policy for all)" in text
    assert text.count("| " + " | ".join(quality.CELL_HEADERS) + " |") == 3
    assert text.count("| " + " | ".join(quality.PHASE_HEADERS) + " |") == 1
    assert text.count("| " + " | ".join(quality.PAIRING_HEADERS) + " |") == 4
    assert text.count("**Verdict: ") == 4
    assert "### Conclusion" in text
    assert "| scenario | adaptive F=1.25 φ=8 tail 3 |" in text


def test_smoke_crash_trials_are_all_detected_by_timeout(smoke: tuple[Any, str]) -> None:
    study, _ = smoke
    for cell in study.cells:
        assert len(cell.outcome.crashes) == 10
        assert {crash.reason for crash in cell.outcome.crashes} == {"timeout"}
        assert 0.0 < cell.outcome.accuracy <= 1.0


def test_smoke_lossless_lan_has_no_false_deaths_and_bounded_detection(
    quality: ModuleType, smoke: tuple[Any, str]
) -> None:
    study, _ = smoke
    link, cells = study.scenarios()[0]
    assert link.loss == 0
    assert link.jitter == 0
    for cell in cells:
        policy = cell.contender.policy
        assert cell.outcome.false_deaths == 0
        assert cell.outcome.accuracy == 1.0
        # The last evidence comes at most one interval (plus a round trip) before the
        # crash, or one one-way delay after it (in flight); the verdict `timeout` later.
        if policy.adaptive is None:
            floor, ceiling = policy.timeout - policy.interval, policy.timeout
        else:
            floor, ceiling = policy.adaptive.min_timeout - policy.interval, policy.timeout
        slack = link.rtt
        for crash in cell.outcome.crashes:
            assert floor - slack <= crash.detection_time <= ceiling + slack
            assert crash.survivor_timeout <= ceiling


def test_smoke_lossy_link_kills_short_timeouts_more_often(smoke: tuple[Any, str]) -> None:
    study, _ = smoke
    link, cells = study.scenarios()[1]
    assert link.loss == 0.10
    by_label = {cell.contender.label: cell for cell in cells}
    short, long = by_label["fixed T=1.5"], by_label["fixed T=3"]
    assert short.outcome.false_deaths > 0
    assert short.death_rate > long.death_rate


def test_smoke_changing_path_reports_both_phases(smoke: tuple[Any, str]) -> None:
    study, _ = smoke
    link, cells = study.scenarios()[2]
    assert link.degraded_loss == 0.10
    for cell in cells:
        phases = {crash.phase for crash in cell.outcome.crashes}
        assert phases <= {"clean", "degraded"}
        phases = cell.outcome.phases
        assert set(phases) <= {"clean", "degraded", "onset"}
        assert phases["clean"] + phases["degraded"] == cell.outcome.false_deaths
        assert phases["onset"] <= phases["degraded"]
    assert all(not c.phase for cell in study.scenarios()[0][1] for c in cell.outcome.crashes)


def test_smoke_population_pools_its_member_paths(smoke: tuple[Any, str]) -> None:
    study, _ = smoke
    [(population, cells)] = study.populations()
    assert [m.link for m in cells[0].members] == list(population.members)
    for cell in cells:
        members = cell.members
        assert cell.outcome.seconds == sum(m.outcome.seconds for m in members)
        assert cell.outcome.steady_false_deaths == sum(
            m.outcome.steady_false_deaths for m in members
        )
        assert sorted(cell.detection_times) == sorted(t for m in members for t in m.detection_times)
        assert {m.contender for m in members} == {cell.contender}


def test_same_seed_gives_the_same_study(quality: ModuleType, smoke: tuple[Any, str]) -> None:
    study, _ = smoke
    again = quality.run_study(study.options)
    assert [cell.outcome for cell in again.cells] == [cell.outcome for cell in study.cells]


# ---------------------------------------------------------------- the network model


class Scripted(random.Random):
    """A generator whose ``random()`` answers a script: 0.0 loses a segment, 0.99 keeps it."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = values

    def random(self) -> float:
        return self.values.pop(0)


def test_a_lost_segment_holds_back_the_ones_behind_it(model: ModuleType) -> None:
    link = model.Link("test", rtt=0.010, loss=0.5)
    direction = model.Direction(link, Scripted([0.0, 0.99, 0.99]))
    direction.send(b"first", 0.0)  # lost once: retransmitted after one RTO
    direction.send(b"second", 0.001)  # through at once, but must wait for "first"
    arrival = link.rto + 0.005
    assert direction.next_delivery() == pytest.approx(arrival)
    assert list(direction.take_due(arrival - 0.001)) == []
    assert list(direction.take_due(arrival)) == [b"first", b"second"]


def test_retransmission_timeout_doubles(model: ModuleType) -> None:
    link = model.Link("test", rtt=0.0, loss=0.5)
    direction = model.Direction(link, Scripted([0.0, 0.0, 0.0, 0.99]))
    direction.send(b"x", 0.0)
    assert direction.next_delivery() == pytest.approx(link.rto * (1 + 2 + 4))


def test_a_crashed_sender_never_retransmits(model: ModuleType) -> None:
    link = model.Link("test", rtt=0.010, loss=0.5)
    direction = model.Direction(link, Scripted([0.99, 0.0, 0.99, 0.99]))
    direction.send(b"on the wire", 0.0)
    direction.send(b"lost", 0.001)
    direction.send(b"behind the hole", 0.002)
    direction.sender_crashed(0.003)
    assert list(direction.take_due(10.0)) == [b"on the wire"]


def test_a_changing_path_is_lossy_only_in_its_degraded_phase(model: ModuleType) -> None:
    link = model.Link(
        "test", rtt=0.010, loss=0.0, degraded_loss=0.5, period=100.0, degraded_for=25.0
    )
    assert [link.phase(t) for t in (0.0, 74.9, 75.0, 99.9, 100.0, 180.0)] == [
        "clean",
        "clean",
        "degraded",
        "degraded",
        "clean",
        "degraded",
    ]
    assert (link.loss_at(10.0), link.loss_at(80.0)) == (0.0, 0.5)
    assert link.degraded_since(180.0) == pytest.approx(5.0)
    assert model.Link("steady", rtt=0.01, loss=0.2).phase(80.0) == ""
    # Loss applies per transmission, at its time: a segment sent at the end of the degraded
    # phase and lost is retransmitted into the clean phase, where it gets through (the
    # script has no second draw: a second draw would fail the test).
    direction = model.Direction(link, Scripted([0.0]))
    direction.send(b"lost once", 99.95)
    assert direction.next_delivery() == pytest.approx(99.95 + link.rto + 0.005)
    clean = model.Direction(link, Scripted([]))
    clean.send(b"never lost", 10.0)
    assert clean.next_delivery() == pytest.approx(10.005)


def test_rto_follows_linux_on_each_profile(quality: ModuleType) -> None:
    lan, wan, jittery = quality.LINKS
    assert lan.rto == pytest.approx(0.2002)
    assert wan.rto == pytest.approx(0.25)
    assert jittery.rto == pytest.approx(0.32)


# ---------------------------------------------------------------- the verdict


def _cell(quality: ModuleType, model: ModuleType, deaths: int, median: float) -> Any:
    """A fixed-policy cell with ``deaths`` false deaths in 10 h and T_D around ``median``."""
    crashes = [model.Crash(median + offset, "timeout", 1.0) for offset in (-0.01, 0.0, 0.01)]
    outcome = model.Outcome(
        seconds=36_000.0,
        false_deaths=deaths,
        steady_seconds=36_000.0,
        steady_false_deaths=deaths,
        crashes=crashes,
    )
    return quality.Cell(quality.LINKS[0], quality.fixed_contender(2.0), outcome)


def test_a_handful_of_deaths_more_or_less_is_noise(quality: ModuleType, model: ModuleType) -> None:
    assert not quality.fewer_deaths(_cell(quality, model, 9, 1), _cell(quality, model, 11, 1))
    assert quality.fewer_deaths(_cell(quality, model, 0, 1), _cell(quality, model, 8, 1))
    assert quality.fewer_deaths(_cell(quality, model, 900, 1), _cell(quality, model, 1000, 1))


def test_only_dominance_counts_as_a_win(quality: ModuleType, model: ModuleType) -> None:
    axis = quality.Axis
    assert quality.judge(axis.BETTER, axis.EQUAL) == "adaptive"
    assert quality.judge(axis.EQUAL, axis.BETTER) == "adaptive"
    assert quality.judge(axis.BETTER, axis.WORSE) == "trade-off"
    assert quality.judge(axis.MIXED, axis.EQUAL) == "trade-off"
    assert quality.judge(axis.EQUAL, axis.WORSE) == "fixed"
    assert quality.judge(axis.EQUAL, axis.EQUAL) == "equal"
    fast_risky, slow_safe = _cell(quality, model, 30, 1.0), _cell(quality, model, 2, 1.5)
    assert quality.speed(fast_risky, slow_safe) is axis.BETTER
    assert quality.safety(fast_risky, slow_safe) is axis.WORSE
