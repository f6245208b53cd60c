"""The heartbeat fast paths (``receive_heartbeat``, ``heartbeat_due``) and their wire layout.

The fast paths exist for speed only: a driver that uses them must see exactly what a driver
that feeds everything to ``receive_data``/``handle_timer`` sees. The simulation below runs
the same seeded conversation through both kinds of driver and compares every byte, event,
deadline and counter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import msgspec
import pytest

from pulsewire.core import Adaptive, CloseCode, Evidence, Policy, Session, State
from pulsewire.core.frames import (
    HEADER_SIZE,
    HEARTBEAT_FRAME_SIZE,
    FrameKind,
    Ping,
    Pong,
    encode_control,
    parse_heartbeat,
    ping_frame,
    pong_frame,
)
from pulsewire.testing import control_frame, data_frame

from .helpers import FAST_PATHS, connected

# ---------------------------------------------------------------- the fixed layout


@pytest.mark.parametrize("seq", [1, 127, 128, 65_535, 2**32 - 1])
def test_heartbeats_round_trip_and_are_plain_msgpack(seq: int) -> None:
    ping, pong = ping_frame(seq, 12.5), pong_frame(seq, 12.5)
    assert len(ping) == len(pong) == HEARTBEAT_FRAME_SIZE
    assert parse_heartbeat(ping) == (FrameKind.PING, seq, 12.5)
    assert parse_heartbeat(memoryview(pong)) == (FrameKind.PONG, seq, 12.5)
    # Any msgpack decoder reads them; the PONG's left-out stuck_for takes its default.
    assert msgspec.msgpack.decode(ping[HEADER_SIZE:], type=Ping) == Ping(seq, 12.5)
    assert msgspec.msgpack.decode(pong[HEADER_SIZE:], type=Pong) == Pong(seq, 12.5, 0.0)


def test_sequence_numbers_beyond_32_bits_fall_back_to_the_general_encoding() -> None:
    seq = 2**32
    assert ping_frame(seq, 1.0) == encode_control(FrameKind.PING, Ping(seq, 1.0))
    assert pong_frame(seq, 1.0) == encode_control(FrameKind.PONG, Pong(seq, 1.0))
    assert parse_heartbeat(ping_frame(seq, 1.0)) is None  # the general decoder reads it


@pytest.mark.parametrize(
    "frame",
    [
        control_frame(Ping(1, 0.5)),  # minimal msgpack: valid, but not the fixed layout
        control_frame(Pong(1, 0.5, 2.0)),
        ping_frame(1, 0.5)[:-1],
        ping_frame(1, 0.5) + b"\x00",
        bytes([FrameKind.CREDIT]) + ping_frame(1, 0.5)[1:],
        ping_frame(1, 0.5)[:1] + b"\x01" + ping_frame(1, 0.5)[2:],  # a flag set
        ping_frame(1, 0.5)[:7] + b"\xcd" + ping_frame(1, 0.5)[8:],  # another int tag
        data_frame(b"x" * (HEARTBEAT_FRAME_SIZE - HEADER_SIZE)),
    ],
)
def test_anything_but_one_fixed_layout_heartbeat_is_left_to_the_general_decoder(
    frame: bytes,
) -> None:
    assert parse_heartbeat(frame) is None


# ---------------------------------------------------------------- fast path = general path


def drive_input(session: Session, data: bytes, now: float, *, fast: bool) -> bytes:
    """What a driver writes after ``data`` arrived: via the fast path when allowed."""
    if fast and len(data) == HEARTBEAT_FRAME_SIZE:
        had_events = session.has_events
        before = session.next_deadline()
        handled = session.receive_heartbeat(data, now)
        if handled is not None:
            reply, deadline = handled
            assert session.has_events == had_events
            assert not session.has_output
            # The deadline it reports is the session's; "None" promises it only moved later.
            if deadline is None:
                after = session.next_deadline()
                assert before is not None
                assert after is not None
                assert after >= before
            else:
                assert deadline == session.next_deadline()
            return reply
    session.receive_data(data, now)
    return bytes(session.data_to_send(None, now))


def drive_timer(session: Session, now: float, *, fast: bool) -> bytes:
    if fast:
        had_events = session.has_events
        due = session.heartbeat_due(now)
        if due is not None:
            ping, deadline = due
            assert session.has_events == had_events
            assert not session.has_output
            assert deadline == session.next_deadline()
            return ping
    session.handle_timer(now)
    return bytes(session.data_to_send(None, now))


@dataclass
class Transcript:
    """Everything a driver could observe, step by step."""

    lines: list[tuple[object, ...]] = field(default_factory=list)


def simulate(
    seed: int, policy: Policy, *, fast: bool, steps: int = 400, cls: type[Session] = Session
) -> Transcript:
    """Two sessions, a lossy reordering-free wire, timers and messages; all seeded.

    ``cls``: the session class, whose fast paths ``fast`` takes (see ``FAST_PATHS``).
    """
    script = random.Random(seed)
    client = cls(policy, now=0.0, rng=random.Random(seed + 1), initiator=True)
    server = cls(policy, now=0.0, rng=random.Random(seed + 2), initiator=False)
    sides = {"client": client, "server": server}
    # In flight: (arrival time, destination, bytes), delivered in order per direction.
    wire: dict[str, list[tuple[float, bytes]]] = {"client": [], "server": []}
    transcript = Transcript()
    now = 0.0
    peer = {"client": "server", "server": "client"}

    def emit(source: str, data: bytes) -> None:
        if not data:
            return
        transcript.lines.append(("out", source, data))
        if script.random() < 0.05:
            return  # lost: the peer never sees it (a blackholed path)
        queue = wire[peer[source]]
        earliest = queue[-1][0] if queue else now
        queue.append((max(earliest, now + script.uniform(0.0, 0.3)), data))

    for name in ("client", "server"):
        emit(name, bytes(sides[name].data_to_send(None, now)))
    for _ in range(steps):
        now += script.choice((0.0, 0.001, 0.05, 0.2, 0.7, 1.3))
        for name, session in sides.items():
            queue = wire[name]
            while queue and queue[0][0] <= now:
                _, data = queue.pop(0)
                emit(name, drive_input(session, data, now, fast=fast))
            deadline = session.next_deadline()
            if deadline is not None and deadline <= now:
                emit(name, drive_timer(session, now, fast=fast))
            if session.state is State.ALIVE and script.random() < 0.02:
                session.send_message(b"m" * script.randrange(0, 64))
                emit(name, bytes(session.data_to_send(None, now)))
            if session.state is State.ALIVE:
                # What the fast paths rely on instead of checking: ALIVE means the
                # handshake is done and no suspicion stands.
                tracker = session._tracker
                assert tracker is not None
                assert not tracker.suspected
            transcript.lines.append(
                (
                    name,
                    now,
                    session.state,
                    session.next_deadline(),
                    session.events_received(),
                    session.stats(now),
                )
            )
    return transcript


POLICIES = {
    "default": Policy(),
    "strict": Policy(interval=0.5, timeout=2.0, evidence=Evidence.PONG),
    "progress": Policy(progress_timeout=0.5),
    "adaptive": Policy(interval=0.5, timeout=4.0, adaptive=Adaptive(min_timeout=1.5)),
}


@pytest.mark.parametrize("cls", FAST_PATHS)
@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("seed", range(12))
def test_the_fast_paths_change_nothing_a_driver_can_observe(
    cls: type[Session], policy_name: str, seed: int
) -> None:
    policy = POLICIES[policy_name]
    fast = simulate(seed, policy, fast=True, cls=cls)
    general = simulate(seed, policy, fast=False)
    assert fast.lines == general.lines


@pytest.mark.parametrize("cls", FAST_PATHS)
def test_the_simulation_exercises_the_fast_paths(cls: type[Session]) -> None:
    # Guard against a vacuous comparison: the fast paths must actually have been taken.
    taken = {"receive": 0, "timer": 0}
    original_receive, original_due = cls.receive_heartbeat, cls.heartbeat_due

    def counting_receive(
        self: Session, frame: bytes, now: float
    ) -> tuple[bytes, float | None] | None:
        handled = original_receive(self, frame, now)
        taken["receive"] += handled is not None
        return handled

    def counting_due(self: Session, now: float) -> tuple[bytes, float] | None:
        due = original_due(self, now)
        taken["timer"] += due is not None and due[0] != b""
        return due

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cls, "receive_heartbeat", counting_receive)
        patch.setattr(cls, "heartbeat_due", counting_due)
        simulate(0, POLICIES["default"], fast=True, cls=cls)
    assert taken["receive"] > 50
    assert taken["timer"] > 50


@pytest.mark.parametrize("cls", FAST_PATHS)
def test_a_ping_flood_on_the_fast_path_is_still_refused_with_its_close_code(
    cls: type[Session],
) -> None:
    session = connected(Policy(), peer_policy=Policy(interval=1.0), cls=cls)
    now = 1.0
    for seq in range(1, 200):
        frame = ping_frame(seq, now)
        if session.receive_heartbeat(frame, now) is None:
            session.receive_data(frame, now)
            break
    assert session.death is not None
    assert session.death.close_code == CloseCode.TOO_MANY_PINGS


@pytest.mark.parametrize("cls", FAST_PATHS)
def test_a_pong_for_a_ping_never_sent_is_left_to_the_general_path_which_refuses_it(
    cls: type[Session],
) -> None:
    session = connected(cls=cls)
    frame = pong_frame(7, 0.0)
    assert session.receive_heartbeat(frame, 0.5) is None
    session.receive_data(frame, 0.5)
    assert session.death is not None
    assert session.death.close_code == CloseCode.PROTOCOL_ERROR


# ---------------------------------------------------------------- the steady state


def _ping_out(session: Session, now: float) -> tuple[int, float]:
    """Fire the timer at ``now`` (a PING must be due) and return that PING's (seq, time)."""
    due = session.heartbeat_due(now)
    assert due is not None
    ping, _ = due
    parsed = parse_heartbeat(ping)
    assert parsed is not None
    _, seq, sent_at = parsed
    return seq, sent_at


@pytest.mark.parametrize("cls", FAST_PATHS)
def test_the_steady_state_holds_only_while_every_condition_does(cls: type[Session]) -> None:
    session = connected(cls=cls)
    session.data_to_send()  # the HELLO went out: nothing waits
    assert session._steady is not None
    session.send_message(b"x")
    assert session._steady is None  # DATA waits
    session.data_to_send()
    assert session._steady is not None
    session.receive_data(ping_frame(1, 0.1)[:5], 0.1)  # half a frame
    assert session._steady is None
    session.receive_data(ping_frame(1, 0.1)[5:], 0.2)
    assert session._steady is None  # the PONG waits
    session.data_to_send()
    assert session._steady is not None
    session.close(0.3)
    assert session._steady is None
    assert session.heartbeat_due(0.4) is None
    assert session.receive_heartbeat(pong_frame(1, 0.0), 0.4) is None


@pytest.mark.parametrize("cls", FAST_PATHS)
def test_an_adaptive_policy_never_takes_the_fast_paths(cls: type[Session]) -> None:
    policy = Policy(interval=0.5, timeout=4.0, adaptive=Adaptive(min_timeout=1.5))
    session = connected(policy, cls=cls)
    session.data_to_send()
    assert session._steady is None
    assert session.heartbeat_due(10.0) is None


@pytest.mark.parametrize("cls", FAST_PATHS)
@pytest.mark.parametrize("pongs", [1, 2, 3, 4])
def test_rtt_samples_staged_by_the_fast_path_are_all_counted_in_order(
    cls: type[Session], pongs: int
) -> None:
    session = connected(cls=cls)
    session.data_to_send()
    now = 0.0
    rtts = []
    for index in range(pongs):
        now += 1.0
        seq, sent_at = _ping_out(session, now)
        rtt = 0.01 * (index + 1)
        now += rtt
        assert session.receive_heartbeat(pong_frame(seq, sent_at), now) == (b"", None)
        rtts.append(rtt)
    assert session.rtt.count == pongs
    assert session.rtt.last == pytest.approx(rtts[-1])
    assert session.rtt.minimum == pytest.approx(min(rtts))
    assert session.stats(now).pongs_received == pongs


@pytest.mark.parametrize("cls", FAST_PATHS)
def test_a_pong_that_does_not_echo_the_latest_ping_takes_the_general_path(
    cls: type[Session],
) -> None:
    session = connected(Policy(interval=1.0, timeout=10.0), cls=cls)  # two PINGs, no suspicion
    session.data_to_send()
    first = _ping_out(session, 1.0)
    latest = _ping_out(session, 2.0)
    # An answer to the older PING is valid, but only the general path takes it.
    assert session.receive_heartbeat(pong_frame(*first), 2.1) is None
    session.receive_data(pong_frame(*first), 2.1)
    assert session.death is None
    assert session.rtt.last == pytest.approx(1.1)
    # The latest PING's number with another time is a lie: refused by both paths.
    session.data_to_send()
    assert session.receive_heartbeat(pong_frame(latest[0], latest[1] + 0.5), 2.2) is None
    assert session.receive_heartbeat(pong_frame(*latest), 2.2) == (b"", None)
