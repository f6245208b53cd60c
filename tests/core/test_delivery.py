"""No silent loss: at a death, every message passed to send is delivered, in doubt or unsent.

Messages are numbered from 0 in send order. The ``Death`` splits them into three ranges:
``range(0, delivered)`` (the peer confirmed them), ``in_doubt`` (handed to the kernel, no
word back) and ``unsent_range`` (never handed whole to the kernel, bytes in ``unsent``).
"""

from __future__ import annotations

import pytest

from pulsewire.core import CloseCode, Death, Limits, Policy, Reason, Session, Source
from pulsewire.core.frames import PREAMBLE, Close, Credit, FrameKind, Pong
from pulsewire.errors import UsageError
from pulsewire.testing import SessionPair, WireMode, control_frame, data_frame, parse_frames

from .helpers import connected, death_of, sent_controls

POLICY = Policy(interval=1.0, timeout=3.0)


def accounted(death: Death) -> None:
    """The three ranges cover every message passed to send, once each, in order."""
    assert 0 <= death.delivered <= death.unsent_range.start <= death.messages_sent
    assert death.in_doubt == range(death.delivered, death.unsent_range.start)
    total = death.delivered + len(death.in_doubt) + len(death.unsent)
    assert total == death.messages_sent
    assert death.undelivered == len(death.in_doubt) + len(death.unsent)


def test_messages_are_numbered_from_zero_in_send_order() -> None:
    session = connected()
    assert [session.send_message(b"m") for _ in range(3)] == [0, 1, 2]


def test_the_peers_consumed_count_marks_what_was_delivered_when_the_link_breaks() -> None:
    pair = SessionPair(POLICY, POLICY)
    for i in range(5):
        pair.client.send_message(b"m%d" % i)
    pair.exchange()
    for message in pair.messages("server")[:3]:
        pair.server.message_consumed(len(message))
    pair.advance(1.0)  # a PING and its PONG: the server's PONG says 3 were consumed
    assert pair.client.stats(pair.now).peer_consumed == 3
    pair.client.connection_lost(Reason.RESET, pair.now)
    death = death_of(pair.client)
    accounted(death)
    assert (death.messages_sent, death.delivered, death.in_doubt) == (5, 3, range(3, 5))
    assert death.unsent == ()
    assert "of 5 messages sent, 2 unconfirmed (death.in_doubt)" in death.describe()


def test_a_busy_one_way_stream_reports_consumption_in_its_credit() -> None:
    # A receiver that only receives sends no PING (it sends CREDIT): with RECEIPTS, the
    # CREDIT frames carry its consumed count.
    limits = Limits(max_message_size=1000)
    pair = SessionPair(POLICY, POLICY, server_limits=limits)
    consumed = 0
    for _i in range(40):
        pair.client.send_message(bytes(100))
        pair.exchange()
        for message in pair.messages("server")[consumed:]:
            pair.server.message_consumed(len(message))
            consumed += 1
        pair.exchange()
    assert pair.client.stats(pair.now).pings_sent == 0  # no time passed: no heartbeat at all
    peer_consumed = pair.client.stats(pair.now).peer_consumed
    assert peer_consumed is not None
    assert peer_consumed >= 40 - 3


def test_an_orderly_close_accounts_for_every_message() -> None:
    pair = SessionPair(POLICY, POLICY)
    for _ in range(3):
        pair.client.send_message(b"x" * 10)
    pair.client.close(pair.now)
    pair.exchange()
    death = death_of(pair.client)
    assert death.clean
    accounted(death)
    assert (death.messages_sent, death.delivered, death.undelivered) == (3, 3, 0)
    assert death.describe_loss() == ""


def test_a_close_the_peer_never_answers_reports_what_was_never_sent() -> None:
    pair = SessionPair(POLICY, POLICY, server_limits=Limits(max_message_size=100))
    messages = [bytes([i]) * 60 for i in range(5)]  # the window (116) takes one at a time
    for message in messages:
        pair.client.send_message(message)
    pair.exchange()  # the server's application consumes nothing: the client runs dry
    pair.client.close(pair.now)
    pair.advance(POLICY.timeout + 0.1)  # close_timeout
    death = death_of(pair.client)
    assert death.reason is Reason.LOCAL_CLOSE
    assert isinstance(death.error, TimeoutError)
    accounted(death)
    # The first went whole; the second half (credit ran out mid-message); the rest waited.
    assert death.unsent == tuple(messages[1:])
    assert death.unsent_range == range(1, 5)
    assert death.in_doubt == range(0, 1)  # the server received it, its application did not take it


def test_a_peer_that_closes_first_hears_what_we_received_and_we_report_our_queue() -> None:
    pair = SessionPair(POLICY, POLICY)
    pair.server.send_message(b"from server")
    pair.client.send_message(b"one")
    pair.exchange()
    pair.to_server.mode = WireMode.HOLD
    pair.client.send_message(b"two")  # still on the wire when the server closes
    pair.server.close(pair.now)
    pair.exchange()  # the client answers the server's CLOSE: "received 1"
    client = death_of(pair.client)
    accounted(client)
    assert client.delivered == 1  # the server's CLOSE said it received "one"
    assert client.in_doubt == range(1, 2)  # "two" was on the wire
    pair.to_server.mode = WireMode.DELIVER
    pair.exchange()
    server = death_of(pair.server)
    accounted(server)
    assert (server.messages_sent, server.delivered) == (1, 1)


def test_messages_the_driver_still_holds_are_unsent_when_it_says_so() -> None:
    session = connected(POLICY)
    session.output_unwritten(0)  # this driver reports what its transport holds
    for i in range(4):
        session.send_message(b"%d" % i * 100)
    out = session.data_to_send()
    assert len(out) == 4 * (6 + 100)
    session.output_unwritten(106 + 53)  # the kernel took two and a half messages
    assert session.stats(0.5).messages_written == 2
    session.send_message(b"queued")
    deadline = session.next_deadline()
    while session.death is None:
        assert deadline is not None
        session.handle_timer(deadline)
        deadline = session.next_deadline()
    death = death_of(session)
    assert death.reason is Reason.TIMEOUT
    accounted(death)
    assert death.unsent == (b"2" * 100, b"3" * 100, b"queued")
    assert death.in_doubt == range(0, 2)


def test_what_a_failed_transport_held_is_in_doubt_unless_the_driver_knows() -> None:
    for unwritten, unsent in ((None, 0), (106, 1)):
        session = connected(POLICY)
        session.output_unwritten(0)
        session.send_message(b"a" * 100)
        session.send_message(b"b" * 100)
        session.data_to_send()
        session.output_unwritten(106)  # at our last look the second was still held
        session.connection_lost(Reason.RESET, 1.0, unwritten=unwritten)
        death = death_of(session)
        accounted(death)
        assert len(death.unsent) == unsent  # None: the kernel may have taken it since


def test_unwritten_beyond_the_output_is_a_driver_error() -> None:
    session = connected()
    with pytest.raises(UsageError, match="unwritten"):
        session.output_unwritten(10**9)


def test_a_driver_that_never_reports_holds_no_messages() -> None:
    session = connected(POLICY)
    for _ in range(1000):
        session.send_message(bytes(100))
        session.data_to_send()
    session.connection_lost(Reason.RESET, 1.0)
    death = death_of(session)
    assert (len(death.in_doubt), death.unsent) == (1000, ())


@pytest.mark.parametrize(
    "frame",
    [
        control_frame(Credit(16, consumed=2)),
        control_frame(Pong(1, 0.5, 0.0, 0.5, 2)),
        control_frame(Close(1000, "", received=2)),
    ],
    ids=["credit", "pong", "close"],
)
def test_a_peer_claiming_more_than_it_could_have_is_a_protocol_error(frame: bytes) -> None:
    session = connected(POLICY)
    session.send_message(b"only one")
    session.data_to_send()
    session.handle_timer(session.next_deadline() or 0.0)  # a PING, so that a PONG may answer
    session.data_to_send()
    session.receive_data(frame, 0.9)
    death = death_of(session)
    assert death.close_code == CloseCode.PROTOCOL_ERROR
    assert "sent whole" in str(death.error)


def test_a_responder_refuses_with_a_close_after_its_preamble() -> None:
    session = Session(POLICY, now=0.0, initiator=False)
    session.close_now(0.0, CloseCode.OVERLOADED, "at the connection limit (10)")
    out = bytes(session.data_to_send())
    assert out.startswith(PREAMBLE)
    (frame,) = parse_frames(out)
    assert frame.kind is FrameKind.CLOSE  # no HELLO: the refusal the protocol defines
    death = death_of(session)
    assert (death.reason, death.source, death.close_code) == (
        Reason.LOCAL_CLOSE,
        Source.LOCAL,
        CloseCode.OVERLOADED,
    )
    # The client reads the refusal as such: an EOF with the code, not its own fault.
    client = Session(POLICY, now=0.0)
    client.receive_data(out, 0.1)
    refused = death_of(client)
    assert (refused.reason, refused.close_code) == (Reason.EOF, CloseCode.OVERLOADED)
    assert refused.close_reason == "at the connection limit (10)"


def test_closing_now_sends_close_ahead_of_queued_data_and_reports_it_unsent() -> None:
    session = connected(POLICY, initiator=False)
    session.send_message(b"queued")
    session.close_now(1.0, CloseCode.OVERLOADED, "over the inbound budget")
    (close,) = sent_controls(session)
    assert (close.code, close.reason) == (CloseCode.OVERLOADED, "over the inbound budget")  # type: ignore[union-attr]
    death = death_of(session)
    assert death.reason is Reason.LOCAL_CLOSE
    assert death.unsent == (b"queued",)
    session.close_now(2.0, CloseCode.NORMAL)  # dead already: nothing more
    assert session.data_to_send() == b""


def test_closing_now_checks_its_code() -> None:
    with pytest.raises(UsageError, match="invalid close code"):
        Session(now=0.0, initiator=False).close_now(0.0, 999)


def test_close_reports_our_received_count_to_a_peer_with_receipts() -> None:
    session = connected(POLICY)
    session.receive_data(data_frame(b"a") + data_frame(b"b"), 0.1)
    session.close(0.2)
    (close,) = sent_controls(session)
    assert close == Close(CloseCode.NORMAL, "", received=2)
