"""One fuzz target for the decoder and the session, shared by the hypothesis suite (in CI)
and the long-run fuzzer (``fuzz.py``, run by hand).

:func:`run_input` reads its bytes as a script: three header bytes choose the side, the
limits, the policy, how the stream is torn into reads and how time passes; the rest is the
byte stream from the "peer", optionally after a valid preamble and HELLO (so that mutations
reach the frames after the handshake). It drives a :class:`~pulsewire.core.Session` as a
driver does (reads, timers, writes with budgets, the local application sending, consuming
and closing), then ends the stream. The rules it checks:

- the decoder raises nothing but :class:`~pulsewire.ProtocolError`, and holds at most one
  frame's bytes;
- the session raises nothing at all on the peer's input;
- after a timer fired, the next deadline is later (a driver never spins);
- the bytes held for the peer stay within its window and one frame;
- a death accounts for every message passed to ``send_message``.

:func:`seed_inputs` makes inputs of realistic streams (both directions of real sessions)
for mutation.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

from pulsewire.core import Died, Limits, MessageReceived, Policy, Session
from pulsewire.core.codec import FrameDecoder
from pulsewire.core.frames import HEADER_SIZE, MAX_CONTROL_PAYLOAD, MESSAGE_OVERHEAD, CloseCode
from pulsewire.errors import ProtocolError, UsageError
from pulsewire.testing import SessionPair, Wire, opening_bytes

__all__ = ["HEADER_BYTES", "run_input", "seed_inputs"]

#: The script's header: flags, tearing, time.
HEADER_BYTES = 3

LIMITS = (
    Limits(),
    Limits(max_frame_size=16, max_message_size=40, chunk_size=8),
    Limits(max_frame_size=1, max_message_size=1, chunk_size=1),
    Limits(max_frame_size=300, max_message_size=1000, receive_window=2000, frame_timeout=0.5),
)
POLICIES = (
    Policy(),
    Policy(interval=0.1, timeout=0.3, handshake_timeout=0.5),
    Policy(interval=1.0, timeout=3.0, progress_timeout=0.2),
    Policy.wan(),
)
STEPS = (0.0, 0.001, 0.05, 0.3, 1.7, 11.0)


def _pieces(stream: bytes, seed: int) -> Iterator[bytes]:
    """``stream`` torn into reads of 1 to 256 bytes, or whole, as ``seed`` says."""
    if seed == 0:
        yield stream
        return
    sizes = random.Random(seed)
    pos = 0
    while pos < len(stream):
        size = sizes.choice((1, 2, 3, 5, 6, 7, 21, 48, 64, 256))
        yield stream[pos : pos + size]
        pos += size


def check_decoder(stream: bytes, max_frame_size: int, seed: int) -> None:
    decoder = FrameDecoder(max_frame_size)
    bound = HEADER_SIZE + max(max_frame_size, MAX_CONTROL_PAYLOAD)
    try:
        for piece in _pieces(stream, seed):
            decoder.feed(piece, seed % 4)  # a limit of 0 (none) to 3 frames a call
            while decoder.feed(b"", 3):
                pass
            assert decoder.buffered < bound, "the decoder holds more than one frame"
        decoder.feed_eof()
    except ProtocolError:
        pass


def run_input(data: bytes) -> None:
    """Run one input (see the module docstring); raise on any broken rule."""
    if len(data) < HEADER_BYTES:
        return
    flags, tear, pace = data[0], data[1], data[2]
    limits = LIMITS[(flags >> 2) & 3]
    policy = POLICIES[(flags >> 4) & 3]
    initiator = bool(flags & 1)
    stream = data[HEADER_BYTES:]
    if flags & 2:  # past the handshake: the peer's valid opening first
        peer = POLICIES[(flags >> 6) & 3]
        stream = opening_bytes(peer, LIMITS[(tear >> 4) & 3]) + stream
    check_decoder(stream, limits.max_frame_size, tear)

    session = Session(policy, limits, now=0.0, rng=random.Random(tear), initiator=initiator)
    bound = limits.effective_receive_window + MESSAGE_OVERHEAD + HEADER_SIZE
    bound += max(limits.max_frame_size, MAX_CONTROL_PAYLOAD)
    steps = random.Random(pace)
    now = 0.0
    sent = 0
    for index, piece in enumerate(_pieces(stream, tear)):
        now += steps.choice(STEPS) if pace else 0.0
        deadline = session.next_deadline()
        while deadline is not None and deadline <= now:
            session.handle_timer(deadline)
            later = session.next_deadline()
            assert later is None or later > deadline, "the deadline did not move on"
            deadline = later
        session.receive_data(piece, now)
        session.data_to_send((None, 0, 7, 1000)[index % 4], now)
        for event in session.events_received():
            if isinstance(event, MessageReceived) and index % 3:
                session.message_consumed(len(event.data))
            elif isinstance(event, Died):
                assert event.death is session.death
        if session.death is None:
            assert session.inbound_held <= bound, "holds more than its window and a frame"
            if session.negotiated is not None and index % 5 == 1:
                size = min(index, session.negotiated.peer.max_message_size)
                with contextlib.suppress(UsageError):  # closing: said to the user at once
                    sent += session.send_message(bytes(size)) >= 0
            if index == 40:
                session.close(now, CloseCode.GOING_AWAY, "fuzz")
    session.receive_eof(now + 0.1)
    session.data_to_send()
    death = session.death
    assert death is not None
    assert death.messages_sent == sent
    assert death.delivered + len(death.in_doubt) + len(death.unsent) == sent


class _Recorder:
    """Stands in for a wire's ``write``: keeps a copy of everything written."""

    def __init__(self, wire: Wire) -> None:
        self.written = bytearray()
        self._write = wire.write
        wire.write = self  # type: ignore[method-assign]

    def __call__(self, data: bytes | bytearray) -> None:
        self.written += data
        self._write(data)


def seed_inputs() -> list[bytes]:
    """Inputs for :func:`run_input` made of what real sessions send: each direction of a
    few conversations (fixed-layout heartbeats with features, CREDIT with counts, chunked
    DATA, CLOSE), recorded as written after the handshake, with the header that replays it
    to a session with the limits it was written for (after a valid opening)."""
    inputs = []
    fast = 1  # POLICIES[1]: pings every 0.1 s
    for variant in (0, 1, 3):
        limits = LIMITS[variant]
        pair = SessionPair(
            POLICIES[fast], POLICIES[fast], client_limits=limits, server_limits=limits
        )
        recorders = {"client": _Recorder(pair.to_server), "server": _Recorder(pair.to_client)}
        consumed = {"client": 0, "server": 0}
        for step in range(10):
            size = min(limits.max_message_size, 7 * step * step)
            pair.client.send_message(bytes(i % 251 for i in range(size)))
            if step % 2:
                pair.server.send_message(b"answer %d" % step)
            pair.advance(0.06)
            for side in ("client", "server"):
                received = pair.messages(side)  # type: ignore[arg-type]
                for message in received[consumed[side] :]:
                    pair.session(side).message_consumed(len(message))  # type: ignore[arg-type]
                consumed[side] = len(received)
            pair.exchange()
        pair.client.close(pair.now)
        pair.exchange()
        for side, receiver_initiates in (("client", 0), ("server", 1)):
            flags = receiver_initiates | 2 | variant << 2 | fast << 4 | fast << 6
            inputs.append(bytes([flags, variant << 4, 0]) + recorders[side].written)
    return inputs
