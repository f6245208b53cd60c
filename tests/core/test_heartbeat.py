"""PING and PONG: their fixed wire layout, and how a session takes them."""

from __future__ import annotations

import msgspec
import pytest

from pulsewire.core import CloseCode, Policy, Session
from pulsewire.core.frames import (
    HEADER,
    HEADER_SIZE,
    HEARTBEAT_FRAME_SIZE,
    FrameKind,
    Ping,
    Pong,
    decode_heartbeat,
    encode_control,
    ping_frame,
    pong_frame,
)
from pulsewire.testing import control_frame, parse_frames

from .helpers import connected, sent_frames

# ---------------------------------------------------------------- the fixed layout


@pytest.mark.parametrize("seq", [1, 127, 128, 65_535, 2**32 - 1])
def test_heartbeats_round_trip_and_are_plain_msgpack(seq: int) -> None:
    ping, pong = ping_frame(seq, 12.5), pong_frame(seq, 12.5)
    assert len(ping) == len(pong) == HEARTBEAT_FRAME_SIZE
    assert [frame.kind for frame in parse_frames(ping + pong, preamble=False)] == [
        FrameKind.PING,
        FrameKind.PONG,
    ]
    assert decode_heartbeat(ping[HEADER_SIZE:]) == (seq, 12.5)
    assert decode_heartbeat(pong[HEADER_SIZE:]) == (seq, 12.5)
    # Any msgpack decoder reads them; the PONG's left-out stuck_for takes its default.
    assert msgspec.msgpack.decode(ping[HEADER_SIZE:], type=Ping) == Ping(seq, 12.5)
    assert msgspec.msgpack.decode(pong[HEADER_SIZE:], type=Pong) == Pong(seq, 12.5, 0.0)


def test_sequence_numbers_beyond_32_bits_use_the_general_encoding() -> None:
    seq = 2**32
    assert ping_frame(seq, 1.0) == encode_control(FrameKind.PING, Ping(seq, 1.0))
    assert pong_frame(seq, 1.0) == encode_control(FrameKind.PONG, Pong(seq, 1.0))
    assert decode_heartbeat(ping_frame(seq, 1.0)[HEADER_SIZE:]) is None


def test_a_stuck_report_uses_the_general_encoding() -> None:
    assert pong_frame(3, 1.0, 2.5) == encode_control(FrameKind.PONG, Pong(3, 1.0, 2.5))


@pytest.mark.parametrize(
    "payload",
    [
        control_frame(Ping(1, 0.5))[HEADER_SIZE:],  # minimal msgpack: valid, not the layout
        control_frame(Pong(1, 0.5, 2.0))[HEADER_SIZE:],
        ping_frame(1, 0.5)[HEADER_SIZE:-1],
        ping_frame(1, 0.5)[HEADER_SIZE:] + b"\x00",
        b"\x93" + ping_frame(1, 0.5)[HEADER_SIZE + 1 :],  # another array length
        ping_frame(1, 0.5)[HEADER_SIZE : HEADER_SIZE + 1] + b"\xcd" + b"\x00" * 13,
    ],
)
def test_anything_but_the_fixed_layout_is_left_to_the_msgpack_decoder(payload: bytes) -> None:
    assert decode_heartbeat(payload) is None


@pytest.mark.parametrize("encode", [ping_frame, lambda seq, at: control_frame(Ping(seq, at))])
def test_a_session_answers_a_ping_in_either_encoding(encode: object) -> None:
    session = connected()
    session.data_to_send()
    session.receive_data(encode(9, 0.25), 0.5)  # type: ignore[operator]
    assert [bytes(frame.payload) for frame in sent_frames(session)] == [
        pong_frame(9, 0.25)[HEADER_SIZE:]
    ]


def test_a_pong_in_the_general_encoding_is_taken_too() -> None:
    session = connected()
    session.data_to_send()
    session.handle_timer(2.0)  # a PING goes out at 2.0
    (ping,) = sent_frames(session)
    seq, sent_at = decode_heartbeat(ping.payload) or (0, 0.0)
    session.receive_data(control_frame(Pong(seq, sent_at)), 2.25)
    assert session.death is None
    assert session.rtt.last == pytest.approx(0.25)


# ---------------------------------------------------------------- what a session accepts


def _ping_out(session: Session, now: float) -> tuple[int, float]:
    """Fire the timer at ``now`` (a PING must be due) and return that PING's (seq, time)."""
    assert session.next_deadline() == pytest.approx(now, abs=1.0)
    session.handle_timer(now)
    (ping,) = sent_frames(session)
    assert ping.kind is FrameKind.PING
    fixed = decode_heartbeat(ping.payload)
    assert fixed is not None
    return fixed


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


def test_a_ping_with_a_time_that_is_not_a_number_is_a_protocol_error() -> None:
    session = connected()
    session.receive_data(ping_frame(1, float("nan")), 1.0)
    assert session.death is not None
    assert session.death.close_code == CloseCode.PROTOCOL_ERROR


def test_a_pong_for_a_ping_never_sent_is_refused() -> None:
    session = connected()
    session.receive_data(pong_frame(7, 0.0), 0.5)
    assert session.death is not None
    assert session.death.close_code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("pongs", [1, 2, 3, 4])
def test_every_rtt_sample_is_counted_in_order(pongs: int) -> None:
    session = connected()
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


@pytest.mark.parametrize("kind", [FrameKind.PING, FrameKind.PONG, FrameKind.CREDIT])
def test_a_deeply_nested_trailing_field_is_a_protocol_error_not_a_crash(kind: FrameKind) -> None:
    # msgspec skips unknown trailing fields recursively: 4,000 nested arrays (within the
    # control frame limit) exhaust the interpreter's recursion limit up to Python 3.12;
    # from 3.13 the limit is deeper and the field is skipped like any other.
    head = {
        FrameKind.PING: b"\x93\x01\xcb" + bytes(8),  # [seq, sent_at, <extra>]
        FrameKind.PONG: b"\x94\x01\xcb" + bytes(8) + b"\x00",  # [seq, sent_at, stuck_for, ...]
        FrameKind.CREDIT: b"\x92\x01",  # [increment, <extra>]
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
