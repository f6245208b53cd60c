from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pulsewire.core import (
    Died,
    Limits,
    MessageReceived,
    Policy,
    Reason,
    Session,
    Source,
    State,
    Suspected,
)
from pulsewire.testing import SessionPair, Side, data_frame, opening_bytes

from .strategies import noise, torn

FAST = settings(max_examples=150, deadline=None)


def handshaken(now: float = 0.0) -> Session:
    session = Session(now=now, rng=random.Random(0))
    session.receive_data(opening_bytes(), now)
    session.data_to_send()
    session.events_received()
    return session


@FAST
@given(st.one_of(st.binary(max_size=300), noise), st.data())
def test_arbitrary_bytes_after_hello_never_raise(garbage: bytes, data: st.DataObject) -> None:
    session = handshaken()
    now = 0.0
    for piece in data.draw(torn(garbage)):
        now += data.draw(st.sampled_from([0.0, 0.3, 2.0]))
        deadline = session.next_deadline()
        if deadline is not None and deadline <= now:
            session.handle_timer(now)
        session.receive_data(piece, now)
        session.data_to_send(data.draw(st.sampled_from([None, 0, 10])))
    died = [e for e in session.events_received() if isinstance(e, Died)]
    if session.state is State.DEAD:
        (event,) = died
        death = event.death
        if death.reason is not Reason.PROTOCOL_ERROR:
            # Only a CLOSE frame in the noise (or the ping timeout) ends it otherwise.
            assert (death.reason, death.source) in {
                (Reason.EOF, Source.PEER),
                (Reason.TIMEOUT, Source.HEARTBEAT),
            }
    else:
        assert died == []


splits = st.lists(st.integers(1, 50), max_size=5)
pauses = st.lists(st.sampled_from([0.0, 0.1, 0.9, 1.7]), max_size=12)


@st.composite
def limits(draw: st.DrawFn) -> Limits:
    return Limits(
        max_frame_size=draw(st.integers(1, 300)),
        max_message_size=draw(st.integers(1, 1000)),
        chunk_size=draw(st.integers(1, 400)),
    )


def messages_for(peer: Limits) -> st.SearchStrategy[list[bytes]]:
    """Messages the peer accepts, often as large as it accepts."""
    size = st.one_of(st.integers(0, peer.max_message_size), st.just(peer.max_message_size))
    return st.lists(size.map(lambda n: random.Random(n).randbytes(n)), max_size=12)


def consume(pair: SessionPair, side: Side, done: int) -> int:
    """Let ``side``'s application take every message it received; return the new count."""
    received = pair.messages(side)
    for message in received[done:]:
        pair.session(side).message_consumed(len(message))
    return len(received)


@FAST
@given(limits(), limits(), splits, pauses, st.data())
def test_pair_delivers_every_message_intact_and_in_order(
    client_limits: Limits,
    server_limits: Limits,
    split: list[int],
    pauses: list[float],
    data: st.DataObject,
) -> None:
    to_server = data.draw(messages_for(server_limits))
    to_client = data.draw(messages_for(client_limits))
    pair = SessionPair(client_limits=client_limits, server_limits=server_limits, seed=3)
    consumed = {"client": 0, "server": 0}
    for i in range(max(len(to_server), len(to_client), len(pauses))):
        if i < len(to_server):
            pair.client.send_message(to_server[i])
        if i < len(to_client):
            pair.server.send_message(to_client[i])
        if i < len(pauses):
            pair.advance(pauses[i])
        pair.exchange(split)
        for side in ("client", "server"):
            consumed[side] = consume(pair, side, consumed[side])
    while pair.client.pending_send_bytes or pair.server.pending_send_bytes:
        assert pair.exchange(split) > 0, "stuck with data pending"
        for side in ("client", "server"):
            consumed[side] = consume(pair, side, consumed[side])
    assert pair.messages("server") == to_server
    assert pair.messages("client") == to_client
    assert (pair.client.state, pair.server.state) == (State.ALIVE, State.ALIVE)


# Dyadic fractions keep every sum exact, so "exactly at the timeout" is exact too.
gaps = st.lists(st.integers(1, 8 * 64).map(lambda n: n / 64), min_size=1, max_size=20)


@FAST
@given(gaps)
def test_peer_is_dead_exactly_when_a_silence_reaches_the_timeout(silences: list[float]) -> None:
    policy = Policy(interval=1.0, timeout=5.0, suspect_after=3.0)
    session = Session(policy, now=0.0, rng=random.Random(0))
    session.receive_data(opening_bytes(), 0.0)
    now = 0.0
    events = []
    for gap in silences:
        while (deadline := session.next_deadline()) is not None and deadline <= now + gap:
            session.handle_timer(deadline)
        now += gap
        session.receive_data(data_frame(b"alive"), now)
        events += session.events_received()
    suspected = sum(isinstance(e, Suspected) for e in events)
    received = sum(isinstance(e, MessageReceived) for e in events)
    fatal = [i for i, gap in enumerate(silences) if gap >= 5.0]
    if fatal:
        assert session.death is not None
        assert session.death.reason is Reason.TIMEOUT
        assert session.death.silence == 5.0
        assert received == fatal[0]
    else:
        assert session.death is None
        assert suspected == sum(gap >= 3.0 for gap in silences)
        assert received == len(silences)
