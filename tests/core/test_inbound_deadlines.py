"""Deadlines on what the peer starts: a dribbled frame or message is closed TOO_SLOW.

Every byte is evidence of life, so a peer that sends one byte a second is never silent;
``Limits.frame_timeout`` and ``Limits.message_timeout`` (with ``min_message_rate``) bound
how long it may keep a frame or a message open instead.
"""

from __future__ import annotations

import pytest

from pulsewire.core import CloseCode, Limits, Policy, Reason, Session, Source
from pulsewire.core.frames import HEADER, FrameKind, Ping
from pulsewire.errors import PolicyError
from pulsewire.testing import control_frame, data_frame

from .helpers import connected, death_of

LIMITS = Limits(frame_timeout=2.0, message_timeout=5.0, min_message_rate=100.0)
#: Heartbeats far apart, so that the deadlines under test are the earliest.
PATIENT = Policy(interval=50.0, timeout=100.0)


def too_slow(session: Session, what: str) -> None:
    death = death_of(session)
    assert (death.reason, death.source) == (Reason.PROTOCOL_ERROR, Source.LOCAL)
    assert death.close_code == CloseCode.TOO_SLOW
    assert what in str(death.error)


def dribble(session: Session, data: bytes, start: float, every: float) -> float:
    """Feed ``data`` one byte per ``every`` seconds from ``start``, firing due timers;
    return the time of the last byte (or of the death)."""
    now = start
    for byte in data:
        deadline = session.next_deadline()
        while deadline is not None and deadline <= now:
            session.handle_timer(deadline)
            if session.death is not None:
                return deadline
            deadline = session.next_deadline()
        session.receive_data(bytes([byte]), now)
        now += every
    return now - every


def test_a_frame_dribbled_byte_by_byte_is_closed_at_the_frame_deadline() -> None:
    session = connected(limits=LIMITS)
    frame = data_frame(b"x" * 100)
    died_at = dribble(session, frame, start=1.0, every=0.5)  # 106 bytes would take 53 s
    too_slow(session, "frame was not completed within frame_timeout (2.0 s)")
    assert died_at == 1.0 + LIMITS.frame_timeout  # from the read that left it incomplete


def test_a_frame_completed_in_time_and_the_next_one_get_their_own_deadline() -> None:
    session = connected(PATIENT, LIMITS)
    frame = data_frame(b"x" * 10)
    session.receive_data(frame[:3], 1.0)
    assert session.next_deadline() == 3.0
    # Completes the first frame and starts the next: its deadline runs from this read.
    session.receive_data(frame[3:] + frame[:3], 2.5)
    assert session.next_deadline() == 4.5
    session.receive_data(frame[3:], 4.0)
    assert session.death is None
    assert (session.next_deadline() or 0.0) > 30.0  # nothing incomplete: the heartbeat


def test_heartbeats_on_an_idle_connection_set_no_inbound_deadline() -> None:
    session = connected(PATIENT, LIMITS)
    session.receive_data(control_frame(Ping(1, 0.5)), 0.6)
    session.data_to_send()
    assert (session.next_deadline() or 0.0) > 30.0  # the heartbeat, not a frame deadline


def test_a_message_dribbled_in_one_byte_chunks_is_closed_at_the_end_of_its_window() -> None:
    session = connected(PATIENT, LIMITS)
    now, died_at = 1.0, None
    while died_at is None:
        deadline = session.next_deadline()
        assert deadline is not None
        if deadline <= now:
            session.handle_timer(deadline)
            died_at = deadline
        else:
            session.receive_data(data_frame(b"x", fin=False), now)  # each frame is whole
            now += 1.0
    too_slow(session, "a message grew by 5 bytes in 5.0 s, less than min_message_rate (100")
    assert died_at == 1.0 + LIMITS.message_timeout  # from its first chunk


def test_a_head_start_buys_a_dribbler_one_window_at_most() -> None:
    session = connected(PATIENT, LIMITS)
    session.receive_data(data_frame(b"x" * 10_000, fin=False), 1.0)  # twenty windows' worth
    session.handle_timer(6.0)  # the first window: it grew by 10,000 bytes, more than 500
    assert session.death is None
    for second in range(7, 11):
        session.receive_data(data_frame(b"x", fin=False), float(second))
    assert session.next_deadline() == 11.0
    session.handle_timer(11.0)  # the second: 4 bytes
    too_slow(session, "a message grew by 4 bytes in 5.0 s")


def test_a_slow_message_that_keeps_its_rate_is_never_cut_off() -> None:
    session = connected(PATIENT, LIMITS)
    now = 1.0
    for _ in range(60):  # 200 bytes a second for a minute, twice the minimum rate
        session.receive_data(data_frame(b"x" * 200, fin=False), now)
        now += 1.0
        deadline = session.next_deadline()
        assert deadline is not None
        if deadline <= now:
            session.handle_timer(now)
    session.receive_data(data_frame(b"end"), now)
    assert session.death is None
    assert session.events_received()[-1].data == b"x" * 12_000 + b"end"  # type: ignore[union-attr]


def test_the_message_clock_stops_while_the_peer_has_no_credit() -> None:
    limits = Limits(
        max_message_size=1000, frame_timeout=2.0, message_timeout=5.0, min_message_rate=100.0
    )
    session = connected(PATIENT, limits)  # window 1016
    session.receive_data(data_frame(b"a" * 500), 0.0)  # not consumed: our application is slow
    session.receive_data(data_frame(b"b" * 495, fin=False), 0.5)  # 5 bytes of credit left
    # Starved of credit, the peer cannot finish: no message deadline, only the heartbeat.
    assert (session.next_deadline() or 0.0) > 30.0
    session.receive_data(control_frame(Ping(1, 20.0)), 20.0)  # the peer lives on
    session.data_to_send()
    # Our application takes the first message: credit goes out, and a new window starts
    # at the latest input (20.0).
    session.message_consumed(500)
    assert session.next_deadline() == 20.0 + 5.0
    session.handle_timer(25.0)  # and the peer did not go on
    too_slow(session, "a message grew by 0 bytes in 5.0 s")


def test_inbound_held_counts_incomplete_frames_messages_and_unconsumed_messages() -> None:
    session = connected(limits=LIMITS)
    assert (session.inbound_held, session.inbound_incomplete) == (0, 0)
    session.receive_data(data_frame(b"x" * 100), 1.0)  # whole, not consumed
    session.receive_data(data_frame(b"y" * 50, fin=False), 1.0)  # half a message
    session.receive_data(HEADER.pack(FrameKind.DATA, 0, 30) + b"z" * 10, 1.0)  # 16 of a frame
    assert session.inbound_incomplete == 50 + 16
    assert session.inbound_held == (100 + 16) + 50 + 16
    session.message_consumed(100)
    assert session.inbound_held == 50 + 16  # the credit for it is granted or due


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frame_timeout", 0),
        ("frame_timeout", float("inf")),
        ("message_timeout", -1.0),
        ("min_message_rate", 0),
        ("min_message_rate", float("nan")),
    ],
)
def test_limits_refuse_deadlines_that_cannot_work(field: str, value: float) -> None:
    with pytest.raises(PolicyError, match=field):
        Limits(**{field: value})  # type: ignore[arg-type]
