"""The public test kit: SessionPair, Wire and the raw frame helpers."""

from __future__ import annotations

import pytest

import pulsewire.testing
from pulsewire.core import Died, MessageReceived, Policy, Reason, Session, State
from pulsewire.core.codec import Frame
from pulsewire.core.frames import FLAG_FIN, PREAMBLE, Close, FrameKind, Hello, Ping
from pulsewire.errors import ProtocolError
from pulsewire.testing import (
    SessionPair,
    WireMode,
    control_frame,
    data_frame,
    decode_control,
    opening_bytes,
    parse_frames,
)

POLICY = Policy(interval=1.0, timeout=5.0)


def test_pair_connects_unless_told_not_to() -> None:
    assert SessionPair().client.state is State.ALIVE
    pair = SessionPair(connect=False)
    assert (pair.client.state, pair.server.state) == (State.HANDSHAKE, State.HANDSHAKE)
    assert pair.exchange() == 2 * len(opening_bytes(name="client"))


def test_exchange_reports_bytes_delivered_and_collects_events() -> None:
    pair = SessionPair()
    pair.server.send_message(b"hey")
    assert pair.exchange() == len(data_frame(b"hey"))
    assert pair.messages("client") == [b"hey"]
    assert pair.events("client")[-1] == MessageReceived(b"hey")
    assert pair.exchange() == 0


def test_exchange_tears_deliveries_at_the_given_sizes() -> None:
    pieces: list[int] = []

    class Recording(Session):
        def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
            pieces.append(len(data))
            super().receive_data(data, now)

    pair = SessionPair(connect=False)
    pair.server = Recording(now=0.0)  # any session can stand in before the handshake
    pair.exchange()
    pieces.clear()
    pair.client.send_message(b"x" * 14)  # a 20-byte frame
    pair.exchange(split=[3, 5])
    assert pieces == [3, 5, 3, 5, 3, 1]


def test_split_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SessionPair().exchange(split=[2, 0])


def test_hold_keeps_bytes_until_delivery_resumes() -> None:
    pair = SessionPair()
    pair.to_server.mode = WireMode.HOLD
    pair.client.send_message(b"later")
    pair.exchange()
    assert pair.messages("server") == []
    assert pair.to_server.in_flight == data_frame(b"later")
    pair.to_server.mode = WireMode.DELIVER
    pair.exchange()
    assert pair.messages("server") == [b"later"]


def test_drop_loses_bytes_for_good() -> None:
    pair = SessionPair()
    pair.to_server.mode = WireMode.DROP
    pair.client.send_message(b"lost")
    pair.exchange()
    pair.to_server.mode = WireMode.DELIVER
    pair.exchange()
    assert pair.messages("server") == []
    assert pair.to_server.dropped == len(data_frame(b"lost"))


def test_advance_fires_every_deadline_on_the_way() -> None:
    pair = SessionPair(POLICY, POLICY)
    pair.advance(10.0)
    assert pair.now == 10.0
    pings = pair.client.stats(10.0).pings_sent + pair.server.stats(10.0).pings_sent
    assert pings >= 10
    assert pair.client.state is State.ALIVE


def test_jump_moves_the_clock_without_firing() -> None:
    pair = SessionPair(POLICY, POLICY)
    pair.jump(0.99)
    assert pair.client.stats(pair.now).pings_sent == 0
    pair.fire_timers()
    assert pair.client.stats(pair.now).pings_sent + pair.server.stats(pair.now).pings_sent >= 1


def test_step_to_deadline_jumps_to_the_earliest_deadline() -> None:
    pair = SessionPair(POLICY, POLICY)
    expected = min(pair.client.next_deadline() or 0.0, pair.server.next_deadline() or 0.0)
    assert pair.next_deadline() == expected
    assert pair.step_to_deadline() == expected == pair.now


def test_clock_cannot_go_back() -> None:
    pair = SessionPair()
    with pytest.raises(ValueError, match="back"):
        pair.advance(-1.0)
    with pytest.raises(ValueError, match="back"):
        pair.jump(-1.0)


def test_no_deadline_once_both_sides_are_dead() -> None:
    pair = SessionPair()
    pair.client.close(pair.now)
    pair.exchange()
    assert pair.next_deadline() is None
    assert pair.step_to_deadline() is None
    assert pair.now == 0.0


def test_frozen_side_neither_runs_timers_nor_reads() -> None:
    pair = SessionPair(POLICY, POLICY)
    pair.freeze("server")
    assert pair.next_deadline() == pair.client.next_deadline()
    pair.client.send_message(b"wake up")
    pair.advance(3.0)
    assert pair.server.stats(pair.now).pings_sent == 0
    assert pair.messages("server") == []
    pair.thaw("server")
    pair.exchange()
    assert pair.messages("server") == [b"wake up"]


def test_orderly_death_ends_the_stream_with_eof() -> None:
    pair = SessionPair()
    pair.to_client.mode = WireMode.DROP  # the client never hears the CLOSE echo...
    pair.server.receive_data(control_frame(Close(1000)), pair.now)
    pair.exchange()
    assert pair.to_client.closed
    assert pair.client.death is None  # ...nor the EOF behind it


def test_abort_ends_the_stream_with_reset() -> None:
    pair = SessionPair()
    pair.client.connection_lost(Reason.UNREACHABLE, pair.now)
    pair.exchange()
    assert pair.server.death is not None
    assert pair.server.death.reason is Reason.RESET


def test_deadline_that_does_not_move_is_reported() -> None:
    class Stuck(Session):
        def handle_timer(self, now: float) -> None:
            pass

    pair = SessionPair(connect=False)
    pair.client = Stuck(now=0.0)
    pair.jump(10.0)
    with pytest.raises(AssertionError, match="client deadline stuck"):
        pair.fire_timers()


def test_died_events_are_collected_per_side() -> None:
    pair = SessionPair()
    pair.client.close(pair.now)
    pair.exchange()
    assert isinstance(pair.client_events[-1], Died)
    assert isinstance(pair.server_events[-1], Died)
    assert pair.session("server") is pair.server


def test_parse_frames_reads_a_sessions_opening() -> None:
    frames = parse_frames(opening_bytes(name="x"))
    assert len(frames) == 1
    hello = decode_control(frames[0])
    assert isinstance(hello, Hello)
    assert hello.name == "x"


def test_parse_frames_mid_stream_and_frame_builders() -> None:
    stream = data_frame(b"ab", fin=False) + data_frame(b"c") + control_frame(Ping(3, 1.5))
    frames = parse_frames(stream, preamble=False)
    assert frames[:2] == [Frame(FrameKind.DATA, 0, b"ab"), Frame(FrameKind.DATA, FLAG_FIN, b"c")]
    assert decode_control(frames[2]) == Ping(3, 1.5)


def test_parse_frames_refuses_a_torn_stream() -> None:
    with pytest.raises(ProtocolError):
        parse_frames(PREAMBLE + data_frame(b"abc")[:-1])


def test_decode_control_refuses_data() -> None:
    with pytest.raises(ValueError, match="DATA"):
        decode_control(Frame(FrameKind.DATA, FLAG_FIN, b""))


def test_the_kit_exports_only_what_users_tests_need() -> None:
    # The root-only namespace lab is the CLI's and the fault suite's, not the public kit's;
    # the protocol's test vectors are for every implementation's tests, pulsewire's too.
    assert sorted(pulsewire.testing.__all__) == [
        "Control",
        "MalformedInput",
        "MemoryByteStream",
        "Receiver",
        "SessionPair",
        "Side",
        "ValidFrame",
        "Vectors",
        "Wire",
        "WireMode",
        "control_frame",
        "data_frame",
        "decode_control",
        "load_vectors",
        "memory_stream_pair",
        "opening_bytes",
        "parse_frames",
    ]
    assert all(hasattr(pulsewire.testing, name) for name in pulsewire.testing.__all__)
