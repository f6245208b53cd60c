"""Abuse limits (too many pings) and progress reports (a stuck application)."""

from __future__ import annotations

import msgspec

from pulsewire.core import Policy, Reason, State
from pulsewire.core.events import Recovered, SuspectCause, Suspected
from pulsewire.core.frames import Close, CloseCode, Ping, Pong
from pulsewire.core.policy import Evidence
from pulsewire.testing import SessionPair, control_frame

from .helpers import connected, death_of, sent_controls


def test_a_peer_that_floods_pings_is_closed_with_too_many_pings() -> None:
    session = connected(Policy(min_peer_interval=1.0))
    now = 0.0
    for seq in range(1, 200):
        now += 0.01
        session.receive_data(control_frame(Ping(seq, now)), now)
        if session.state is State.DEAD:
            break
    death = death_of(session)
    assert death.reason is Reason.PROTOCOL_ERROR
    assert death.close_code == CloseCode.TOO_MANY_PINGS
    assert session.stats(now).pings_refused == 1
    sent = sent_controls(session)
    assert isinstance(sent[-1], Close)
    assert sent[-1].code == CloseCode.TOO_MANY_PINGS


def test_pings_at_the_negotiated_rate_with_jitter_and_bursts_are_tolerated() -> None:
    session = connected(Policy(min_peer_interval=1.0), peer_policy=Policy(interval=1.0))
    now, seq = 0.0, 0
    for _ in range(50):  # a peer jittering 25 % early every time
        now += 0.75
        seq += 1
        session.receive_data(control_frame(Ping(seq, now)), now)
    now += 5.0  # a retransmission stall releases the peer's queued pings together
    for _ in range(5):
        seq += 1
        session.receive_data(control_frame(Ping(seq, now)), now)
    assert session.state is State.ALIVE


def _stuck_pair(evidence: Evidence) -> SessionPair:
    client = Policy(interval=1.0, timeout=5.0, jitter=0.0, evidence=evidence)
    server = Policy(interval=100.0, timeout=300.0, progress_timeout=0.5)
    pair = SessionPair(client, server)
    pair.client.send_message(b"work")
    pair.exchange()
    pair.server.events_received()  # the application never consumes it
    return pair


def test_a_peer_whose_application_is_stuck_is_suspect_with_that_cause() -> None:
    pair = _stuck_pair(Evidence.ANY)
    pair.advance(1.1)  # the client pings; the server's PONG says it is stuck
    assert pair.client.state is State.SUSPECT
    suspects = [e for e in pair.client_events if isinstance(e, Suspected)]
    assert suspects[-1].cause is SuspectCause.PEER_STUCK
    assert pair.client.stats(pair.now).peer_stuck_for > 0.5

    pair.server.message_consumed(4)  # the application catches up
    pair.advance(1.1)
    assert pair.client.state is State.ALIVE
    assert isinstance(pair.client_events[-1], Recovered)
    assert pair.client.stats(pair.now).peer_stuck_for == 0.0


def test_in_strict_mode_a_stuck_peer_is_no_proof_of_life_and_is_convicted() -> None:
    pair = _stuck_pair(Evidence.PONG)
    pair.advance(5.5)
    assert death_of(pair.client).reason is Reason.TIMEOUT


def test_pong_without_the_progress_field_still_decodes() -> None:
    # An older peer's PONG has two fields; the third defaults to "not stuck".
    old = msgspec.msgpack.encode([3, 1.5])
    assert msgspec.msgpack.decode(old, type=Pong) == Pong(3, 1.5, 0.0)
