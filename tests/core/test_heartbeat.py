"""PING and PONG: their fixed wire layouts, the features they carry, how a session takes them."""

from __future__ import annotations

import random

import msgspec
import pytest

from pulsewire.core import CloseCode, Limits, PingAnswered, Policy, Session
from pulsewire.core.frames import (
    FEATURES,
    HEADER,
    HEADER_SIZE,
    HEARTBEAT_FRAME_SIZE,
    LONG_HEARTBEAT_FRAME_SIZE,
    Feature,
    FrameKind,
    Hello,
    Ping,
    Pong,
    decode_heartbeat,
    encode_control,
    parse_heartbeat,
    ping_frame,
    pong_frame,
)
from pulsewire.testing import SessionPair, control_frame, data_frame, parse_frames

from .helpers import connected, sent_frames

# ---------------------------------------------------------------- the fixed layouts


@pytest.mark.parametrize("seq", [1, 127, 128, 65_535, 2**32 - 1])
def test_short_heartbeats_round_trip_and_are_plain_msgpack(seq: int) -> None:
    ping, pong = ping_frame(seq, 12.5), pong_frame(seq, 12.5)
    assert len(ping) == len(pong) == HEARTBEAT_FRAME_SIZE
    assert parse_heartbeat(ping) == Ping(seq, 12.5)
    assert parse_heartbeat(memoryview(pong)) == Pong(seq, 12.5)
    # Any msgpack decoder reads them; the fields left out take their defaults.
    assert msgspec.msgpack.decode(ping[HEADER_SIZE:], type=Ping) == Ping(seq, 12.5)
    assert msgspec.msgpack.decode(pong[HEADER_SIZE:], type=Pong) == Pong(seq, 12.5)


def test_long_heartbeats_round_trip_and_are_plain_msgpack() -> None:
    ping = ping_frame(7, 1.5, echo=1.25, held=0.125, consumed=42)
    pong = pong_frame(7, 1.5, stuck_for=0.0, stamp=1.75, consumed=41)
    assert len(ping) == len(pong) == LONG_HEARTBEAT_FRAME_SIZE
    assert parse_heartbeat(ping) == Ping(7, 1.5, 1.25, 0.125, 42)
    assert parse_heartbeat(pong) == Pong(7, 1.5, 0.0, 1.75, 41)
    assert msgspec.msgpack.decode(ping[HEADER_SIZE:], type=Ping) == Ping(7, 1.5, 1.25, 0.125, 42)
    assert msgspec.msgpack.decode(pong[HEADER_SIZE:], type=Pong) == Pong(7, 1.5, 0.0, 1.75, 41)


def test_what_fits_no_fixed_layout_uses_the_general_encoding_without_default_fields() -> None:
    seq = 2**32
    assert ping_frame(seq, 1.0) == encode_control(FrameKind.PING, Ping(seq, 1.0))
    assert parse_heartbeat(ping_frame(seq, 1.0)) is None
    # A stuck report to a peer without features carries exactly the fields it knows.
    stuck = pong_frame(3, 1.0, 2.5)
    assert msgspec.msgpack.decode(stuck[HEADER_SIZE:]) == [3, 1.0, 2.5]
    assert msgspec.msgpack.decode(stuck[HEADER_SIZE:], type=Pong) == Pong(3, 1.0, 2.5)
    # Only one of the features' fields known (the first PING, before any PONG stamp).
    first = ping_frame(1, 1.0, consumed=0)
    assert msgspec.msgpack.decode(first[HEADER_SIZE:], type=Ping) == Ping(1, 1.0, None, 0.0, 0)


@pytest.mark.parametrize(
    "payload",
    [
        control_frame(Ping(1, 0.5))[HEADER_SIZE:],  # minimal msgpack: valid, not a layout
        control_frame(Pong(1, 0.5, 2.0))[HEADER_SIZE:],
        ping_frame(1, 0.5)[HEADER_SIZE:-1],
        ping_frame(1, 0.5)[HEADER_SIZE:] + b"\x00",
        b"\x93" + ping_frame(1, 0.5)[HEADER_SIZE + 1 :],  # another array length
        ping_frame(1, 0.5)[HEADER_SIZE : HEADER_SIZE + 1] + b"\xcd" + b"\x00" * 13,
        ping_frame(1, 0.5, 0.25, 0.0, 3)[HEADER_SIZE:-9] + b"\xcb" + bytes(8),  # float count
    ],
)
def test_anything_but_a_fixed_layout_is_left_to_the_msgpack_decoder(payload: bytes) -> None:
    assert decode_heartbeat(FrameKind.PING, payload) is None


@pytest.mark.parametrize(
    "frame",
    [
        data_frame(b"x" * (HEARTBEAT_FRAME_SIZE - HEADER_SIZE)),
        bytes([FrameKind.CREDIT]) + ping_frame(1, 0.5)[1:],
        ping_frame(1, 0.5)[:1] + b"\x01" + ping_frame(1, 0.5)[2:],  # a flag set
        ping_frame(1, 0.5) + ping_frame(2, 0.5),  # two frames in one read
        ping_frame(1, 0.5)[:-1],
    ],
)
def test_a_whole_frame_parse_takes_exactly_one_heartbeat(frame: bytes) -> None:
    assert parse_heartbeat(frame) is None


# ---------------------------------------------------------------- features


def old_peer_opening(policy: Policy | None = None) -> bytes:
    """The preamble and HELLO of a peer that predates features (it announces none)."""
    hello = control_frame(
        Hello(1.0, 0.05, 3.0, 64 * 1024, 4 * 1024 * 1024, 4 * 1024 * 1024 + 16, "old")
    )
    preamble = bytes(Session(policy, now=0.0).data_to_send())[:5]
    return preamble + hello


def test_a_session_announces_its_features() -> None:
    session = Session(now=0.0)
    frames = parse_frames(session.data_to_send())
    (hello,) = [frame for frame in frames if frame.kind is FrameKind.HELLO]
    decoded = msgspec.msgpack.decode(hello.payload, type=Hello)
    assert Feature(decoded.features) == FEATURES
    assert FEATURES == Feature.ECHO | Feature.PROGRESS | Feature.RECEIPTS


def test_a_peer_without_features_sees_the_wire_it_always_saw() -> None:
    session = Session(now=0.0, rng=random.Random(0))
    session.data_to_send()
    session.receive_data(old_peer_opening(), 0.0)
    session.data_to_send()
    session.handle_timer(session.next_deadline() or 0.0)
    (ping,) = sent_frames(session)
    assert len(ping.payload) + HEADER_SIZE == HEARTBEAT_FRAME_SIZE  # the short layout
    session.receive_data(ping_frame(1, 0.25), 1.0)  # it pings us: a short PONG back
    (pong,) = sent_frames(session)
    assert msgspec.msgpack.decode(pong.payload) == [1, 0.25]
    assert session.stats(1.0).peer_consumed is None  # it does not report consumption


def test_the_side_that_only_answers_measures_rtt_from_echoed_stamps() -> None:
    pair = SessionPair(Policy(interval=1.0, timeout=3.0), Policy(interval=1.0, timeout=3.0))
    assert pair.server.rtt.count == 0  # the responder has no handshake sample
    for _ in range(4):  # the client leads; the server only answers
        pair.step_to_deadline()
    assert pair.server.stats(pair.now).pings_sent == 0
    # The second PING echoes the first PONG's stamp: from then on one sample per PING.
    assert pair.server.rtt.count >= 2
    assert pair.server.rtt.last == 0.0  # the in-memory wire takes no time


def test_an_echo_sample_subtracts_the_time_the_stamp_was_held() -> None:
    session = connected()
    session.data_to_send()
    session.receive_data(ping_frame(1, 0.5), 1.0)  # we answer at 1.0 with stamp 1.0
    (pong,) = sent_frames(session)
    stamp = msgspec.msgpack.decode(pong.payload, type=Pong).stamp
    assert stamp == 1.0
    before = session.rtt.count
    # The peer got it 0.1 s later, held it 0.85 s, and its next PING arrives at 2.05:
    # a round trip of 0.2 s.
    session.receive_data(ping_frame(2, 1.5, echo=1.0, held=0.85, consumed=0), 2.05)
    assert session.rtt.count == before + 1
    assert session.rtt.last == pytest.approx(0.2)


@pytest.mark.parametrize(("echo", "held"), [(0.5, 0.1), (1.0, 2.0)])
def test_an_echo_that_is_not_ours_or_makes_no_sense_is_ignored(echo: float, held: float) -> None:
    session = connected()
    session.data_to_send()
    session.receive_data(ping_frame(1, 0.5), 1.0)  # our stamp: 1.0
    session.data_to_send()
    before = session.rtt.count
    session.receive_data(ping_frame(2, 1.5, echo=echo, held=held, consumed=0), 2.0)
    assert session.death is None
    assert session.rtt.count == before


@pytest.mark.parametrize(
    ("echo", "held"),
    [(1.0, -0.5), (float("nan"), 0.0), (float("inf"), 0.0), (1.0, float("nan")), (1.0, 1e9)],
)
def test_an_echo_out_of_the_field_bounds_is_a_protocol_error_in_either_layout(
    echo: float, held: float
) -> None:
    # The fixed layout is parsed without msgspec: it must refuse what msgspec refuses.
    for frame in (
        ping_frame(2, 1.5, echo=echo, held=held, consumed=0),  # the fixed long layout
        control_frame(Ping(2**40, 1.5, echo, held, 0)),  # msgpack: a seq too big to fix
    ):
        session = connected()
        session.receive_data(frame, 2.0)
        assert session.death is not None
        assert session.death.close_code == CloseCode.PROTOCOL_ERROR
        assert "malformed PING payload" in str(session.death.error)


def test_each_side_learns_how_many_of_its_messages_the_peers_application_took() -> None:
    pair = SessionPair(Policy(interval=1.0, timeout=3.0), Policy(interval=1.0, timeout=3.0))
    for index in range(5):
        pair.client.send_message(b"m%d" % index)
    pair.exchange()
    for _ in range(3):  # the server's application takes three of the five
        pair.server.message_consumed(2)
    pair.step_to_deadline()  # a PING and its PONG
    assert pair.client.stats(pair.now).peer_consumed == 3
    assert pair.server.stats(pair.now).messages_consumed == 3


@pytest.mark.parametrize("consumed", [9, 1])
def test_an_impossible_consumption_report_is_a_protocol_error(consumed: int) -> None:
    session = connected()
    session.data_to_send()
    session.send_message(b"only one")
    session.data_to_send()
    if consumed == 1:  # a report going backwards
        session.receive_data(ping_frame(1, 0.5, consumed=1), 0.5)
        consumed = 0
    session.receive_data(ping_frame(2, 0.6, consumed=consumed), 0.6)
    assert session.death is not None
    assert session.death.close_code == CloseCode.PROTOCOL_ERROR
    assert "messages consumed" in str(session.death.error)


# ---------------------------------------------------------------- what a session accepts


def _ping_out(session: Session, now: float) -> tuple[int, float]:
    """Fire the timer at ``now`` (a PING must be due) and return that PING's (seq, time)."""
    session.handle_timer(now)
    (ping,) = sent_frames(session)
    assert ping.kind is FrameKind.PING
    fixed = decode_heartbeat(FrameKind.PING, ping.payload) or msgspec.msgpack.decode(
        ping.payload, type=Ping
    )
    assert isinstance(fixed, Ping)
    return fixed.seq, fixed.sent_at


@pytest.mark.parametrize("encode", [ping_frame, lambda seq, at: control_frame(Ping(seq, at))])
def test_a_session_answers_a_ping_in_any_encoding(encode: object) -> None:
    session = connected()
    session.data_to_send()
    session.receive_data(encode(9, 0.25), 0.5)  # type: ignore[operator]
    (pong,) = sent_frames(session)
    assert pong.kind is FrameKind.PONG
    assert decode_heartbeat(FrameKind.PONG, pong.payload) == Pong(9, 0.25, 0.0, 0.5, 0)


def test_a_pong_in_the_general_encoding_is_taken_too() -> None:
    session = connected()
    session.data_to_send()
    seq, sent_at = _ping_out(session, 2.0)
    session.receive_data(control_frame(Pong(seq, sent_at)), 2.25)
    assert session.death is None
    assert session.rtt.last == pytest.approx(0.25)


def test_a_ping_flood_is_refused_with_its_close_code() -> None:
    session = connected(Policy(), peer_policy=Policy(interval=1.0))
    for seq in range(1, 200):
        session.receive_data(ping_frame(seq, 1.0), 1.0)
        if session.death is not None:
            break
    assert session.death is not None
    assert session.death.close_code == CloseCode.TOO_MANY_PINGS
    assert session.stats(1.0).pings_refused == 1


def test_a_flooders_claimed_timeout_buys_it_no_bigger_burst() -> None:
    # The burst a peer may send is sized by *our* timeout: a HELLO claiming a day changes nothing.
    counts = []
    for claimed in (3.0, 86_400.0):
        session = connected(Policy(), peer_policy=Policy(interval=1.0, timeout=claimed))
        seq = 0
        while session.death is None:
            seq += 1
            session.receive_data(ping_frame(seq, 1.0), 1.0)
        counts.append(seq)
    assert counts[0] == counts[1] < 200


@pytest.mark.parametrize("sent_at", [float("nan"), float("inf")])
def test_a_ping_with_a_time_that_is_not_a_number_is_a_protocol_error(sent_at: float) -> None:
    session = connected()
    session.receive_data(ping_frame(1, sent_at), 1.0)
    assert session.death is not None
    assert session.death.close_code == CloseCode.PROTOCOL_ERROR


def test_a_pong_for_a_ping_never_sent_is_refused() -> None:
    session = connected()
    session.receive_data(pong_frame(7, 0.0), 0.5)
    assert session.death is not None
    assert session.death.close_code == CloseCode.PROTOCOL_ERROR


def test_a_pong_with_an_impossible_stuck_time_is_refused() -> None:
    session = connected()
    session.data_to_send()
    seq, sent_at = _ping_out(session, 1.0)
    session.receive_data(pong_frame(seq, sent_at, float("nan"), 1.0, 0), 1.1)
    assert session.death is not None
    assert session.death.close_code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("pongs", [1, 2, 3, 4])
def test_every_rtt_sample_is_counted_in_order(pongs: int) -> None:
    session = connected(initiator=False)  # no handshake sample: only the PONGs count
    session.data_to_send()
    now = 0.0
    rtts = []
    for index in range(pongs):
        now = session.next_deadline() or 0.0
        seq, sent_at = _ping_out(session, now)
        rtt = 0.01 * (index + 1)
        now += rtt
        session.receive_data(pong_frame(seq, sent_at), now)
        rtts.append(rtt)
    assert session.rtt.count == pongs
    assert session.rtt.last == pytest.approx(rtts[-1])
    assert session.rtt.minimum == pytest.approx(min(rtts))
    assert session.stats(now).pongs_received == pongs


def test_the_initiator_measures_its_first_rtt_at_the_handshake() -> None:
    session = Session(now=10.0)
    session.data_to_send()
    session.receive_data(old_peer_opening(), 10.04)
    assert session.rtt.count == 1
    assert session.rtt.last == pytest.approx(0.04)


def test_an_answer_to_an_older_ping_counts_but_a_forged_time_does_not() -> None:
    session = connected(Policy(interval=1.0, timeout=10.0))  # two PINGs, no suspicion
    session.data_to_send()
    first = _ping_out(session, 1.0)
    latest = _ping_out(session, 2.0)
    session.receive_data(pong_frame(*first), 2.1)
    assert session.death is None
    assert session.rtt.last == pytest.approx(1.1)
    session.receive_data(pong_frame(latest[0], latest[1] + 0.5), 2.2)  # a time never sent
    assert session.death is not None
    assert session.death.close_code == CloseCode.PROTOCOL_ERROR


def test_an_on_demand_ping_is_answered_with_an_event_and_replaces_the_next_one() -> None:
    pair = SessionPair(Policy(interval=1.0, timeout=3.0), Policy(interval=1.0, timeout=3.0))
    scheduled = pair.client.next_deadline()
    with pytest.raises(Exception, match="too soon"):  # within half an interval of the last
        pair.client.send_ping(0.3)
    pair.now = pair.client.ping_allowed_at()
    seq = pair.client.send_ping(pair.now)
    assert (pair.client.next_deadline() or 0.0) > (scheduled or 0.0)  # it counts as the ping
    pair.exchange()
    answered = [event for event in pair.client_events if isinstance(event, PingAnswered)]
    assert answered == [PingAnswered(seq, 0.0)]


def test_an_on_demand_ping_needs_an_open_connection() -> None:
    session = Session(now=0.0)
    with pytest.raises(Exception, match="before the handshake"):
        session.send_ping(0.0)


@pytest.mark.parametrize("kind", [FrameKind.PING, FrameKind.PONG, FrameKind.CREDIT])
def test_a_deeply_nested_trailing_field_is_a_protocol_error_not_a_crash(kind: FrameKind) -> None:
    # msgspec skips unknown trailing fields recursively: 4,000 nested arrays (within the
    # control frame limit) exhaust the interpreter's recursion limit up to Python 3.12;
    # from 3.13 the limit is deeper and the field is skipped like any other.
    head = {
        FrameKind.PING: b"\x96\x01\xcb" + bytes(8) + b"\xc0\x00\xc0",  # 5 fields, then <extra>
        FrameKind.PONG: b"\x96\x01\xcb" + bytes(8) + b"\x00\xc0\xc0",
        FrameKind.CREDIT: b"\x93\x01\xc0",  # [increment, consumed, <extra>]
    }[kind]

    def fed(extra: bytes) -> Session:
        payload = head + extra
        session = connected()
        session.receive_data(HEADER.pack(kind, 0, len(payload)) + payload, 1.0)  # never raises
        return session

    death = fed(b"\x91" * 4000 + b"\xc0").death
    if death is not None and "nested too deeply" in str(death.error):
        assert death.close_code == CloseCode.PROTOCOL_ERROR
        return
    # Decoded: the same outcome as with a flat trailing field (nil).
    flat = fed(b"\xc0").death
    assert (death is None) == (flat is None)
    if death is not None and flat is not None:
        assert (death.close_code, str(death.error)) == (flat.close_code, str(flat.error))


def test_limits_do_not_change_the_heartbeat_layouts() -> None:
    session = connected(limits=Limits(max_frame_size=64))
    session.data_to_send()
    session.receive_data(ping_frame(1, 0.5, echo=None, consumed=0), 1.0)
    assert session.death is None
