from __future__ import annotations

import array
import random

import msgspec
import pytest

from pulsewire.core import (
    CloseCode,
    Death,
    Died,
    HandshakeCompleted,
    Limits,
    MessageReceived,
    Policy,
    Reason,
    Session,
    Source,
    State,
)
from pulsewire.core.frames import (
    FEATURES,
    FLAG_FIN,
    PREAMBLE,
    Close,
    Credit,
    FrameKind,
    Hello,
    Ping,
    Pong,
    encode_control,
)
from pulsewire.errors import (
    HandshakeError,
    LocalClosedError,
    PeerDeadError,
    ProtocolError,
    UsageError,
)
from pulsewire.testing import (
    Control,
    SessionPair,
    WireMode,
    control_frame,
    data_frame,
    decode_control,
    opening_bytes,
    parse_frames,
)

from .helpers import connected, death_of, sent_controls, sent_frames


def protocol_death(session: Session, code: CloseCode) -> Death:
    """Assert that ``session`` died of the peer's protocol error and sent CLOSE(code)."""
    death = death_of(session)
    assert death.reason is Reason.PROTOCOL_ERROR
    assert death.source is Source.LOCAL
    assert death.close_code == code
    assert isinstance(death.error, ProtocolError)
    assert death.error.code == code
    closes = [c for c in sent_controls(session) if isinstance(c, Close)]
    assert (code, death.close_reason) in [(c.code, c.reason) for c in closes]
    return death


def sent_controls_of(data: bytes) -> list[Control]:
    """The control payloads in a whole stream, preamble included."""
    return [decode_control(f) for f in parse_frames(data)]


# ================================================================== handshake


def test_pair_handshake_makes_both_sides_alive() -> None:
    pair = SessionPair()
    assert (pair.client.state, pair.server.state) == (State.ALIVE, State.ALIVE)
    assert pair.client_events == [HandshakeCompleted("server", 1.0, 1.0)]
    assert pair.server_events == [HandshakeCompleted("client", 1.0, 1.0)]


def test_session_opens_with_preamble_then_hello() -> None:
    data = Session(Policy(interval=2, timeout=9), now=0.0, name="me").data_to_send()
    assert data.startswith(PREAMBLE)
    assert sent_controls_of(bytes(data)) == [
        Hello(2.0, 0.05, 9.0, 64 * 1024, 4 * 1024 * 1024, 4 * 1024 * 1024 + 16, "me", FEATURES)
    ]


@pytest.mark.parametrize(
    ("interval", "peer_min_interval", "expected"),
    [(1.0, 0.05, 1.0), (0.5, 2.0, 2.0), (3.0, 3.0, 3.0)],
)
def test_ping_interval_is_ours_or_the_peers_minimum_whichever_is_longer(
    interval: float, peer_min_interval: float, expected: float
) -> None:
    client = Policy(interval=interval, timeout=10.0)
    server = Policy(interval=1.0, timeout=10.0, min_peer_interval=peer_min_interval)
    pair = SessionPair(client, server)
    assert pair.client.negotiated is not None
    assert pair.server.negotiated is not None
    assert pair.client.negotiated.ping_interval == expected
    assert pair.server.negotiated.peer_ping_interval == expected
    assert pair.client_events[0] == HandshakeCompleted("server", expected, 1.0)


def test_negotiated_interval_governs_the_pings() -> None:
    pair = SessionPair(
        Policy(interval=0.5, timeout=10.0),
        Policy(interval=100.0, timeout=1000.0, min_peer_interval=2.0),
    )
    first_ping = pair.step_to_deadline()
    assert first_ping is not None
    assert 1.5 <= first_ping <= 2.0
    assert pair.client.stats(pair.now).pings_sent == 1


def test_incompatible_proposals_close_with_policy_mismatch() -> None:
    client = Policy(interval=1.0, timeout=5.0)
    server = Policy(interval=7.0, timeout=20.0, min_peer_interval=6.0)
    pair = SessionPair(client, server)
    death = death_of(pair.client)
    assert death.reason is Reason.PROTOCOL_ERROR
    assert isinstance(death.error, HandshakeError)
    assert death.close_code == CloseCode.POLICY_MISMATCH
    assert "within our timeout" in str(death.error)
    peer = death_of(pair.server)
    assert (peer.reason, peer.source) == (Reason.PROTOCOL_ERROR, Source.PEER)
    assert peer.close_code == CloseCode.POLICY_MISMATCH


@pytest.mark.parametrize(
    "garbage", [b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x02\x00", b"PWIX\x01"]
)
def test_wrong_magic_fails_the_handshake(garbage: bytes) -> None:
    session = Session(now=0.0)
    session.data_to_send()
    session.receive_data(garbage, 0.0)
    death = protocol_death(session, CloseCode.UNSUPPORTED_VERSION)
    assert isinstance(death.error, HandshakeError)
    assert session.negotiated is None


def test_wrong_version_fails_the_handshake() -> None:
    session = Session(now=0.0)
    session.data_to_send()
    session.receive_data(b"PWIR\x02" + opening_bytes()[5:], 0.0)
    death = protocol_death(session, CloseCode.UNSUPPORTED_VERSION)
    assert isinstance(death.error, HandshakeError)
    assert "version 2" in str(death.error)


def test_handshake_failure_before_flush_still_sends_hello_then_close() -> None:
    session = Session(now=0.0)
    session.receive_data(b"XXXXX", 0.0)
    controls = sent_controls_of(bytes(session.data_to_send()))
    assert [type(c) for c in controls] == [Hello, Close]


def test_handshake_timeout_kills_with_timeout_and_handshake_error() -> None:
    session = Session(Policy(handshake_timeout=3.0), now=10.0)
    session.data_to_send()  # the preamble and HELLO
    assert session.next_deadline() == 13.0
    session.handle_timer(12.9)
    assert session.state is State.HANDSHAKE
    session.handle_timer(13.0)
    death = death_of(session)
    assert (death.reason, death.source) == (Reason.TIMEOUT, Source.HEARTBEAT)
    assert isinstance(death.error, HandshakeError)
    assert death.error.code is CloseCode.HANDSHAKE_TIMEOUT
    assert death.close_code == CloseCode.HANDSHAKE_TIMEOUT
    assert session.events_received() == [Died(death, abort=False)]
    close = sent_controls(session)[-1]
    assert isinstance(close, Close)
    assert close.code == CloseCode.HANDSHAKE_TIMEOUT


def test_dribbling_peer_does_not_extend_the_handshake_deadline() -> None:
    session = Session(Policy(handshake_timeout=3.0), now=0.0)
    hello = opening_bytes()
    for i in range(len(hello) - 1):
        session.receive_data(hello[i : i + 1], i * 0.01)
    assert session.next_deadline() == 3.0
    session.handle_timer(3.0)
    assert death_of(session).reason is Reason.TIMEOUT
    assert death_of(session).silence == pytest.approx(3.0 - (len(hello) - 2) * 0.01)


def test_unanswered_pair_handshake_times_out_on_both_sides() -> None:
    pair = SessionPair(connect=False)
    pair.to_server.mode = pair.to_client.mode = WireMode.HOLD
    pair.advance(20.0)
    assert death_of(pair.client).reason is Reason.TIMEOUT
    assert death_of(pair.server).reason is Reason.TIMEOUT


@pytest.mark.parametrize(
    "first",
    [control_frame(Ping(1, 0.0)), data_frame(b"hi")],
)
def test_frame_before_hello_is_a_protocol_error(first: bytes) -> None:
    session = Session(now=0.0)
    session.data_to_send()
    session.receive_data(PREAMBLE + first, 0.0)
    death = protocol_death(session, CloseCode.PROTOCOL_ERROR)
    assert "expected HELLO" in str(death.error)


def test_hello_twice_is_a_protocol_error() -> None:
    session = connected()
    session.receive_data(opening_bytes()[len(PREAMBLE) :], 0.5)
    death = protocol_death(session, CloseCode.PROTOCOL_ERROR)
    assert "twice" in str(death.error)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        msgspec.msgpack.encode({"interval": 1.0}),
        msgspec.msgpack.encode([1.0, 0.05]),
        msgspec.msgpack.encode(["1", 0.05, 5.0, 10, 10, 26]),
        msgspec.msgpack.encode([0.0, 0.05, 5.0, 10, 10, 26]),
        msgspec.msgpack.encode([1.0, 0.05, 5.0, 0, 10, 26]),
        msgspec.msgpack.encode([1.0, 0.05, 5.0, 10, 10, 26, "n" * 257]),
    ],
)
def test_malformed_hello_fails_the_handshake(payload: bytes) -> None:
    session = Session(now=0.0)
    session.data_to_send()
    header = bytes([FrameKind.HELLO, 0]) + len(payload).to_bytes(4, "big")
    session.receive_data(PREAMBLE + header + payload, 0.0)
    death = protocol_death(session, CloseCode.PROTOCOL_ERROR)
    assert isinstance(death.error, HandshakeError)
    assert "malformed HELLO" in str(death.error)


def test_send_before_handshake_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="handshake"):
        Session(now=0.0).send_message(b"early")


def test_name_the_peer_would_reject_is_refused_at_construction() -> None:
    Session(now=0.0, name="n" * 256)
    with pytest.raises(UsageError, match="name"):
        Session(now=0.0, name="n" * 257)


# ================================================================== DATA


def test_messages_arrive_whole_and_in_order() -> None:
    pair = SessionPair()
    for message in (b"one", b"", b"three" * 1000):
        pair.client.send_message(message)
    pair.exchange()
    assert pair.messages("server") == [b"one", b"", b"three" * 1000]
    assert pair.client.pending_send_bytes == 0


@pytest.mark.parametrize(
    ("message", "named"), [(5, "int"), (None, "NoneType"), ("text", "str"), ([1], "list")]
)
def test_only_bytes_like_messages_are_accepted(message: object, named: str) -> None:
    # bytes(5) is five zero bytes and bytes(None) a puzzling TypeError: neither may pass.
    session = connected()
    with pytest.raises(TypeError, match=f"bytes, bytearray or memoryview, not {named}"):
        session.send_message(message)  # type: ignore[arg-type]
    assert session.pending_send_bytes == 0
    assert sent_frames(session) == []
    session.send_message(memoryview(array.array("H", [1, 2])))  # bytes-like: sized in bytes
    assert session.pending_send_bytes == 4


def test_empty_message_is_one_final_empty_frame() -> None:
    session = connected()
    session.send_message(b"")
    assert sent_frames(session) == [(FrameKind.DATA, FLAG_FIN, b"")]


def test_messages_are_cut_at_chunk_size() -> None:
    session = connected(limits=Limits(chunk_size=10))
    session.send_message(bytes(range(25)))
    frames = sent_frames(session)
    assert [len(f.payload) for f in frames] == [10, 10, 5]
    assert [f.flags for f in frames] == [0, 0, FLAG_FIN]
    assert b"".join(f.payload for f in frames) == bytes(range(25))


def test_messages_are_cut_at_the_peers_max_frame_size() -> None:
    session = connected(limits=Limits(chunk_size=1000), peer_limits=Limits(max_frame_size=8))
    session.send_message(b"x" * 20)
    assert [len(f.payload) for f in sent_frames(session)] == [8, 8, 4]


def test_chunks_reassemble_across_torn_reads() -> None:
    pair = SessionPair(client_limits=Limits(chunk_size=7))
    message = bytes(random.Random(1).randbytes(1000))
    pair.client.send_message(message)
    pair.exchange(split=[3, 1, 11])
    assert pair.messages("server") == [message]


def test_no_message_until_the_final_chunk() -> None:
    session = connected()
    session.receive_data(data_frame(b"abc", fin=False) + data_frame(b"def", fin=False), 0.1)
    assert session.events_received() == []
    session.receive_data(data_frame(b"g"), 0.2)
    assert session.events_received() == [MessageReceived(b"abcdefg")]


def test_message_too_large_for_the_peer_raises_at_send() -> None:
    session = connected(peer_limits=Limits(max_message_size=100))
    session.send_message(b"x" * 100)
    with pytest.raises(UsageError, match="max_message_size"):
        session.send_message(b"x" * 101)
    assert session.pending_send_bytes == 100


def test_memoryview_of_wider_items_is_sized_in_bytes() -> None:
    pair = SessionPair()
    items = array.array("i", [1, 2, 3])
    pair.client.send_message(memoryview(items))
    assert pair.client.pending_send_bytes == items.itemsize * 3
    pair.exchange()
    assert pair.messages("server") == [items.tobytes()]
    assert pair.client.pending_send_bytes == 0


def test_mutable_buffer_is_copied_at_send() -> None:
    pair = SessionPair()
    buffer = bytearray(b"before")
    pair.client.send_message(buffer)
    buffer[:] = b"after!"
    pair.exchange()
    assert pair.messages("server") == [b"before"]


def test_peer_message_beyond_max_message_size_is_too_large() -> None:
    session = connected(limits=Limits(max_message_size=10, receive_window=1000))
    session.receive_data(data_frame(b"x" * 6, fin=False) + data_frame(b"x" * 5), 0.1)
    protocol_death(session, CloseCode.TOO_LARGE)
    assert session.events_received()[-1] == Died(death_of(session), abort=False)


def test_peer_frame_beyond_max_frame_size_is_too_large() -> None:
    session = connected(limits=Limits(max_frame_size=16))
    session.receive_data(data_frame(b"x" * 17), 0.1)
    protocol_death(session, CloseCode.TOO_LARGE)


def test_empty_non_final_chunk_is_a_protocol_error() -> None:
    session = connected()
    session.receive_data(data_frame(b"", fin=False), 0.1)
    protocol_death(session, CloseCode.PROTOCOL_ERROR)


# ------------------------------------------------------------------ credit

SMALL = Limits(max_message_size=100)  # window: 100 bytes + 16 of per-message overhead


def test_sender_stops_at_credit_and_resumes_when_the_peer_consumes() -> None:
    pair = SessionPair(server_limits=SMALL)
    for tag in b"abc":
        pair.client.send_message(bytes([tag]) * 100)
    pair.exchange()
    assert pair.messages("server") == [b"a" * 100]
    assert pair.client.pending_send_bytes == 200
    pair.server.message_consumed(100)
    pair.exchange()
    assert pair.messages("server") == [b"a" * 100, b"b" * 100]
    pair.server.message_consumed(100)
    pair.exchange()
    assert pair.messages("server")[-1] == b"c" * 100
    assert pair.client.pending_send_bytes == 0


def test_sender_uses_partial_credit_for_a_non_final_chunk() -> None:
    session = connected(peer_limits=SMALL)
    session.send_message(b"x" * 90)  # costs 106 of 116
    session.send_message(b"y" * 50)
    frames = sent_frames(session)
    assert [(len(f.payload), f.flags) for f in frames] == [(90, FLAG_FIN), (10, 0)]
    assert session.pending_send_bytes == 40


def test_final_chunk_waits_for_credit_covering_its_overhead() -> None:
    session = connected(peer_limits=SMALL)
    session.send_message(b"x" * 100)
    session.send_message(b"")
    sent_frames(session)
    assert sent_frames(session) == []
    session.receive_data(control_frame(Credit(15)), 0.1)
    assert sent_frames(session) == []
    session.receive_data(control_frame(Credit(1)), 0.2)
    assert sent_frames(session) == [(FrameKind.DATA, FLAG_FIN, b"")]


def test_consumption_is_reported_in_batches_of_a_quarter_window() -> None:
    session = connected(limits=Limits(max_message_size=1000))  # window 1016
    session.message_consumed(200)  # 216 * 4 < 1016
    assert sent_frames(session) == []
    session.message_consumed(50)  # (216 + 66) * 4 >= 1016
    assert sent_controls(session) == [Credit(282, consumed=2)]  # Feature.RECEIPTS: the count


def test_largest_message_after_a_small_consumed_one_is_not_deadlocked() -> None:
    # The small message's credit is below the batching threshold; the large one needs it.
    pair = SessionPair(server_limits=Limits(max_message_size=1000))
    pair.client.send_message(b"a" * 200)
    pair.exchange()
    pair.server.message_consumed(200)
    pair.client.send_message(b"b" * 1000)
    pair.exchange()
    assert pair.messages("server") == [b"a" * 200, b"b" * 1000]
    assert pair.client.pending_send_bytes == 0


def test_credit_is_granted_at_once_when_the_peer_runs_dry() -> None:
    session = connected(limits=Limits(max_message_size=1000))  # window 1016
    session.receive_data(data_frame(b"x"), 0.1)
    session.message_consumed(1)  # 17 unreported: far below a quarter window
    assert sent_frames(session) == []
    session.receive_data(data_frame(b"y" * 990, fin=False), 0.2)  # 9 bytes of credit left
    assert sent_controls(session) == [Credit(17, consumed=1)]


def test_peer_exceeding_its_credit_is_a_flow_control_error() -> None:
    session = connected(limits=SMALL)
    session.receive_data(data_frame(b"x" * 100), 0.1)
    assert session.death is None
    session.receive_data(data_frame(b"x"), 0.2)
    protocol_death(session, CloseCode.FLOW_CONTROL)


def test_granted_credit_lets_the_peer_send_more() -> None:
    session = connected(limits=SMALL)
    session.receive_data(data_frame(b"x" * 100), 0.1)
    session.message_consumed(100)
    session.receive_data(data_frame(b"x" * 100), 0.2)
    assert session.death is None


def test_absurd_credit_from_the_peer_is_a_flow_control_error() -> None:
    session = connected()
    session.receive_data(control_frame(Credit(2**31)) * 600, 0.1)
    protocol_death(session, CloseCode.FLOW_CONTROL)


# ------------------------------------------------------------------ control lane


def test_pong_goes_out_ahead_of_queued_data() -> None:
    session = connected()
    session.send_message(b"x" * 100_000)
    session.receive_data(control_frame(Ping(9, 0.0)), 0.1)
    frames = sent_frames(session, budget=20_000)
    assert frames[0].kind is FrameKind.PONG
    assert decode_control(frames[0]) == Pong(9, 0.0, 0.0, 0.1, 0)  # stamp, consumed: features
    assert {f.kind for f in frames[1:]} == {FrameKind.DATA}
    assert sum(len(f.payload) for f in frames[1:]) == 20_000


def test_zero_budget_sends_control_frames_only() -> None:
    session = connected()
    session.send_message(b"x" * 1000)
    session.receive_data(control_frame(Ping(1, 0.0)), 0.1)
    session.message_consumed(10**7)
    frames = sent_frames(session, budget=0)
    assert [f.kind for f in frames] == [FrameKind.PONG, FrameKind.CREDIT]
    assert session.pending_send_bytes == 1000


def test_pings_interleave_with_a_long_transfer() -> None:
    session = connected(limits=Limits(chunk_size=1000))
    session.send_message(b"x" * 50_000)
    sent_frames(session, budget=5000)
    session.handle_timer(session.next_deadline() or 0.0)
    assert sent_frames(session, budget=1000)[0].kind is FrameKind.PING


# ================================================================== CLOSE


def test_local_close_sends_queued_data_then_close_and_completes_cleanly() -> None:
    pair = SessionPair()
    pair.client.send_message(b"last")
    pair.client.close(pair.now)
    assert pair.client.state is State.CLOSING
    frames = sent_frames(pair.client)
    assert [f.kind for f in frames] == [FrameKind.DATA, FrameKind.CLOSE]
    pair.client.receive_data(encode_control(FrameKind.CLOSE, Close(1000)), pair.now)
    death = death_of(pair.client)
    assert (death.reason, death.source, death.clean) == (Reason.LOCAL_CLOSE, Source.LOCAL, True)
    assert Died(death, abort=False) in pair.client.events_received()


def test_close_handshake_through_a_pair() -> None:
    pair = SessionPair()
    pair.client.send_message(b"bye")
    pair.client.close(pair.now, CloseCode.GOING_AWAY, "shutting down")
    pair.exchange()
    assert pair.messages("server") == [b"bye"]
    client, server = death_of(pair.client), death_of(pair.server)
    assert (client.reason, client.close_code, client.close_reason) == (
        Reason.LOCAL_CLOSE,
        CloseCode.GOING_AWAY,
        "shutting down",
    )
    assert (server.reason, server.source, server.close_code, server.close_reason) == (
        Reason.EOF,
        Source.PEER,
        CloseCode.GOING_AWAY,
        "shutting down",
    )
    assert not client.clean


def test_close_waits_for_queued_data_held_back_by_credit() -> None:
    pair = SessionPair(server_limits=SMALL)
    pair.client.send_message(b"a" * 100)
    pair.client.send_message(b"b" * 100)
    pair.client.close(pair.now)
    pair.exchange()
    assert pair.server.state is State.ALIVE
    pair.server.message_consumed(100)
    pair.exchange()
    assert pair.messages("server") == [b"a" * 100, b"b" * 100]
    assert death_of(pair.server).clean
    assert death_of(pair.client).clean


def test_peer_close_echoes_the_code_and_dies_with_eof() -> None:
    session = connected()
    session.send_message(b"never sent")
    session.receive_data(control_frame(Close(4001, "app says bye")), 1.0)
    death = death_of(session)
    assert (death.reason, death.source) == (Reason.EOF, Source.PEER)
    assert (death.close_code, death.close_reason) == (4001, "app says bye")
    assert sent_controls(session) == [Close(4001, received=0)]  # with Feature.RECEIPTS
    # What was queued is reported, not dropped: never sent, and no longer pending.
    assert death.unsent == (b"never sent",)
    assert (death.messages_sent, death.delivered, death.in_doubt) == (1, 0, range(0, 0))


BLAMING = [
    CloseCode.PROTOCOL_ERROR,
    CloseCode.UNSUPPORTED_VERSION,
    CloseCode.POLICY_MISMATCH,
    CloseCode.TOO_MANY_PINGS,
    CloseCode.TOO_LARGE,
    CloseCode.FLOW_CONTROL,
    CloseCode.HANDSHAKE_TIMEOUT,
]


@pytest.mark.parametrize("code", BLAMING)
def test_peer_close_code_that_blames_us_is_a_protocol_error(code: CloseCode) -> None:
    session = connected()
    session.receive_data(control_frame(Close(code)), 1.0)
    death = death_of(session)
    assert (death.reason, death.source, death.close_code) == (
        Reason.PROTOCOL_ERROR,
        Source.PEER,
        code,
    )


@pytest.mark.parametrize("code", [CloseCode.NORMAL, CloseCode.GOING_AWAY, 1011, 4000])
def test_peer_close_code_that_does_not_blame_us_is_eof(code: int) -> None:
    session = connected()
    session.receive_data(control_frame(Close(code)), 1.0)
    assert death_of(session).reason is Reason.EOF


def test_close_timeout_aborts_as_local_close() -> None:
    pair = SessionPair(Policy(close_timeout=2.0))
    pair.freeze("server")
    pair.client.close(pair.now)
    pair.advance(1.999)
    assert pair.client.state is State.CLOSING
    pair.step_to_deadline()
    assert pair.now == 2.0
    death = death_of(pair.client)
    assert (death.reason, death.source, death.close_code) == (
        Reason.LOCAL_CLOSE,
        Source.LOCAL,
        CloseCode.NORMAL,
    )
    assert isinstance(death.error, TimeoutError)
    assert not death.clean
    assert Died(death, abort=True) in pair.client_events


def test_close_during_handshake_completes_once_the_peer_answers() -> None:
    pair = SessionPair(connect=False)
    pair.client.close(pair.now)
    assert pair.client.state is State.CLOSING
    pair.exchange()
    assert death_of(pair.client).clean
    assert death_of(pair.server).clean


def test_simultaneous_close_completes_on_both_sides() -> None:
    pair = SessionPair()
    pair.client.close(pair.now)
    pair.server.close(pair.now)
    pair.exchange()
    assert death_of(pair.client).reason is Reason.LOCAL_CLOSE
    assert death_of(pair.server).reason is Reason.LOCAL_CLOSE


def test_close_is_idempotent() -> None:
    session = connected()
    session.close(0.0, 4000, "first")
    session.close(1.0, 4001, "second")
    assert sent_controls(session) == [Close(4000, "first", received=0)]


@pytest.mark.parametrize("code", [0, 999, 3000, 5000])
def test_close_with_an_invalid_code_is_a_usage_error(code: int) -> None:
    with pytest.raises(UsageError, match="close code"):
        connected().close(0.0, code)


def test_close_reason_is_limited_to_1024_bytes() -> None:
    connected().close(0.0, reason="é" * 512)
    with pytest.raises(UsageError, match="1024"):
        connected().close(0.0, reason="é" * 513)


def test_eof_kills_with_eof() -> None:
    session = connected()
    session.receive_eof(2.0)
    death = death_of(session)
    assert (death.reason, death.source, death.error) == (Reason.EOF, Source.KERNEL, None)
    assert not death.clean
    assert session.events_received() == [Died(death, abort=False)]


def test_eof_inside_a_frame_keeps_the_protocol_error() -> None:
    session = connected()
    session.receive_data(data_frame(b"abcdef")[:4], 1.0)
    session.receive_eof(2.0)
    death = death_of(session)
    assert death.reason is Reason.EOF
    assert isinstance(death.error, ProtocolError)


def test_eof_while_closing_completes_the_close() -> None:
    session = connected()
    session.close(1.0)
    session.receive_eof(1.5)
    assert death_of(session).reason is Reason.LOCAL_CLOSE


@pytest.mark.parametrize("reason", [Reason.RESET, Reason.UNREACHABLE, Reason.TIMEOUT, Reason.EOF])
def test_connection_lost_dies_with_the_drivers_reason_and_aborts(reason: Reason) -> None:
    session = connected()
    error = ConnectionResetError(104, "reset by peer")
    session.connection_lost(reason, 3.0, error=error)
    death = death_of(session)
    assert (death.reason, death.source, death.error) == (reason, Source.KERNEL, error)
    assert death.silence == 3.0
    assert session.events_received() == [Died(death, abort=True)]


def test_connection_lost_while_closing_is_a_local_close() -> None:
    session = connected()
    session.close(1.0)
    session.connection_lost(Reason.EOF, 1.5)
    assert death_of(session).reason is Reason.LOCAL_CLOSE


def test_abort_drops_pending_control_frames() -> None:
    session = connected()
    session.receive_data(control_frame(Ping(1, 0.0)), 0.5)
    session.connection_lost(Reason.RESET, 1.0)
    assert session.data_to_send() == b""


# ------------------------------------------------------------------ after death


def test_send_after_peer_death_raises_peer_dead_with_the_reason() -> None:
    session = connected()
    session.connection_lost(Reason.RESET, 1.0)
    with pytest.raises(PeerDeadError) as info:
        session.send_message(b"late")
    assert info.value.death is session.death
    assert info.value.reason is Reason.RESET


def test_send_after_local_close_raises_local_closed() -> None:
    pair = SessionPair()
    pair.client.close(pair.now)
    pair.exchange()
    with pytest.raises(LocalClosedError) as info:
        pair.client.send_message(b"late")
    assert info.value.reason is Reason.LOCAL_CLOSE


def test_send_while_closing_is_a_usage_error() -> None:
    session = connected()
    session.close(1.0)
    with pytest.raises(UsageError, match="close"):
        session.send_message(b"late")


def test_dead_session_ignores_every_input() -> None:
    session = connected()
    session.receive_eof(1.0)
    session.events_received()
    death = session.death
    session.receive_data(data_frame(b"x"), 2.0)
    session.receive_eof(2.0)
    session.connection_lost(Reason.RESET, 2.0)
    session.handle_timer(100.0)
    session.close(2.0)
    session.message_consumed(10)
    assert session.death is death
    assert session.events_received() == []
    assert session.next_deadline() is None


# ================================================================== queries and stats


def drive(session: Session, query: bool) -> tuple[list[object], bytes]:
    """A fixed script of inputs; with ``query``, every query is asked twice between them."""
    outputs: list[bytes] = []
    events: list[object] = []
    peer = opening_bytes() + data_frame(b"hello") + control_frame(Ping(1, 0.0))
    script = [
        lambda now: session.receive_data(peer, now),
        lambda now: session.send_message(b"world"),
        lambda now: session.handle_timer(now),
        lambda now: session.handle_timer(now),
        lambda now: session.handle_timer(now),
        lambda now: session.close(now),
    ]
    now = 0.0
    for step in script:
        if query:
            for _ in range(2):
                session.next_deadline()
                session.stats(now)
                _ = (session.state, session.pending_send_bytes, session.silence(now))
        step(now)
        outputs.append(bytes(session.data_to_send()))
        events += session.events_received()
        now = session.next_deadline() or now
    return events, b"".join(outputs)


def test_queries_change_nothing() -> None:
    plain = drive(Session(now=0.0, rng=random.Random(5)), query=False)
    queried = drive(Session(now=0.0, rng=random.Random(5)), query=True)
    assert queried == plain


def test_stats_count_messages_bytes_and_pings() -> None:
    pair = SessionPair()
    pair.client.send_message(b"12345")
    pair.exchange()
    pair.to_client.mode = WireMode.HOLD  # the client hears nothing more: it pings
    pair.advance(2.0)
    client = pair.client.stats(pair.now)
    server = pair.server.stats(pair.now)
    assert (client.messages_sent, client.messages_written) == (1, 1)
    assert server.messages_received == 1
    assert client.pings_sent >= 2
    assert server.pings_received == client.pings_sent
    assert client.pongs_received == 0
    assert client.bytes_in == len(opening_bytes(name="server"))
    assert client.pings_received == 0  # whatever the server said is held on the wire


def test_bytes_out_and_in_count_every_byte_framing_included() -> None:
    session = Session(now=0.0, name="client")
    out = bytes(session.data_to_send())
    session.receive_data(opening_bytes(name="server"), 0.0)
    session.send_message(b"12345")
    out += bytes(session.data_to_send())
    stats = session.stats(0.0)
    assert stats.bytes_out == len(out) > len(opening_bytes(name="client")) + 5
    assert stats.bytes_in == len(opening_bytes(name="server"))


def test_stats_is_a_frozen_snapshot() -> None:
    session = connected()
    stats = session.stats(1.0)
    session.send_message(b"x")
    assert stats.pending_send_bytes == 0
    with pytest.raises(AttributeError):
        stats.pings_sent = 1  # type: ignore[misc]


def test_silence_counts_from_the_last_bytes() -> None:
    session = connected(now=1.0)
    assert session.silence(3.5) == 2.5
    session.receive_data(data_frame(b"x"), 3.0)
    assert session.silence(3.5) == 0.5
