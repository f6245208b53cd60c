"""Write the wire protocol's test vectors, ``src/pulsewire/testing/vectors.json``.

    .venv/bin/python scripts/make_test_vectors.py           # (re)write the file
    .venv/bin/python scripts/make_test_vectors.py --check   # exit 1 if it is out of date

Every valid frame is written by pulsewire's own encoder (the functions its sessions send
with), and its meaning is decoded back by pulsewire's own decoder. Every malformed input
is fed to a real responder session, and the CLOSE code that session sends is what the file
records; the code each input is meant to draw is written below as well, and the script
refuses to write a file where the two disagree. ``tests/test_vectors.py`` runs ``--check``,
so the file cannot drift from the code.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from pulsewire.core.codec import Frame, FrameDecoder
from pulsewire.core.frames import (
    FLAG_FIN,
    HEADER,
    MAX_CONTROL_PAYLOAD,
    PREAMBLE,
    VERSION,
    Close,
    CloseCode,
    Credit,
    FrameKind,
    Hello,
    Ping,
    Pong,
    encode_control,
    frame_header,
    ping_frame,
    pong_frame,
)
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.session import Session
from pulsewire.errors import HandshakeError
from pulsewire.testing import decode_control, opening_bytes
from pulsewire.testing.vectors import (
    VECTORS_FILE,
    MalformedInput,
    Receiver,
    ValidFrame,
    Vectors,
)

OUTPUT = Path(__file__).resolve().parents[1] / "src" / "pulsewire" / "testing" / VECTORS_FILE

ABOUT = (
    "Test vectors of the pulsewire wire protocol. 'valid': frames (hex, header and "
    "payload) with their kind, flags and decoded fields; a receiver must decode each to "
    "these values, and an encoder that writes the value should produce these bytes when "
    "'written_by_pulsewire' is true (the other entries are other encodings a receiver "
    "must accept). 'malformed': bytes from a peer, to be fed in one piece to a receiver "
    "(a responder with the 'receiver' policy and limits, its clock at 0) after what "
    "'after' names: nothing, the 'preamble', or the whole 'peer_opening' (preamble and "
    "HELLO). The receiver must send a CLOSE frame with 'close_code' and drop the "
    "connection; 'error' says whether the handshake failed or an open connection broke."
)

#: The receiver of the malformed inputs: the default policy, and small limits so that the
#: size and credit vectors stay small.
RECEIVER_POLICY = Policy()
RECEIVER_LIMITS = Limits(max_frame_size=64, max_message_size=128, receive_window=256)
#: The peer that sends the malformed inputs introduces itself with the default policy.
PEER_OPENING = opening_bytes(Policy(), Limits(), name="peer")


def _written(decoded: Frame) -> bytes:
    """The bytes pulsewire writes for the value of ``decoded``."""
    if decoded.kind is FrameKind.DATA:
        return _data(decoded.payload, fin=bool(decoded.flags & FLAG_FIN))
    value = decode_control(decoded)
    # The heartbeat writers take the struct's fields, by name.
    if isinstance(value, Ping):
        return ping_frame(**msgspec.structs.asdict(value))
    if isinstance(value, Pong):
        return pong_frame(**msgspec.structs.asdict(value))
    return encode_control(decoded.kind, value)


def _valid(name: str, description: str, frame: bytes) -> ValidFrame:
    """Decode ``frame`` with pulsewire's decoder and describe it; whether pulsewire writes
    exactly these bytes for its value is found out, not declared."""
    decoder = FrameDecoder(max_frame_size=2**31)
    decoder.feed(PREAMBLE)
    (decoded,) = decoder.feed(frame)
    decoder.feed_eof()
    fields: dict[str, Any] | None = None
    data: str | None = None
    if decoded.kind is FrameKind.DATA:
        data = decoded.payload.hex()
    else:
        fields = msgspec.structs.asdict(decode_control(decoded))
    return ValidFrame(
        name=name,
        description=description,
        hex=frame.hex(),
        kind=decoded.kind.name,
        flags=decoded.flags,
        fields=fields,
        data=data,
        written_by_pulsewire=_written(decoded) == frame,
    )


def _data(payload: bytes, *, fin: bool) -> bytes:
    # The header as a session writes it before a chunk of a message.
    return frame_header(FrameKind.DATA, FLAG_FIN if fin else 0, len(payload)) + payload


def _hello_from_session(name: str) -> bytes:
    """The HELLO frame that a session with the default policy and limits sends."""
    return opening_bytes(Policy(), Limits(), name=name)[len(PREAMBLE) :]


def valid_frames() -> list[ValidFrame]:
    hello = _hello_from_session("demo")
    return [
        _valid("hello", "HELLO of a side with the default policy and limits, named 'demo'", hello),
        _valid("hello-no-name", "HELLO without a name: the empty string", _hello_from_session("")),
        _valid(
            "ping",
            "PING seq 1 sent at 12.5 s, in the fixed 21-byte layout (seq as uint32)",
            ping_frame(1, 12.5),
        ),
        _valid(
            "ping-beyond-32-bits",
            "PING whose seq does not fit the fixed layout: msgpack's shortest encoding",
            ping_frame(2**32, 12.5),
        ),
        _valid("pong", "PONG echoing PING(1, 12.5), in the fixed layout", pong_frame(1, 12.5)),
        _valid(
            "pong-stuck",
            "PONG whose sender's application has left a message unconsumed for 2 s",
            pong_frame(1, 12.5, 2.0),
        ),
        _valid(
            "close",
            "CLOSE 1000 (NORMAL) 'bye'",
            encode_control(FrameKind.CLOSE, Close(1000, "bye")),
        ),
        _valid(
            "close-application",
            "CLOSE with an application's code (4000-4999) and no reason",
            encode_control(FrameKind.CLOSE, Close(4000)),
        ),
        _valid(
            "credit",
            "CREDIT of 65536 bytes",
            encode_control(FrameKind.CREDIT, Credit(65536)),
        ),
        _valid(
            "close-receipt",
            "CLOSE 1000 with Feature.RECEIPTS: 7 messages received from the peer, all told",
            encode_control(FrameKind.CLOSE, Close(1000, received=7)),
        ),
        _valid(
            "credit-receipt",
            "CREDIT of 4096 bytes with Feature.RECEIPTS: 3 messages consumed so far",
            encode_control(FrameKind.CREDIT, Credit(4096, consumed=3)),
        ),
        _valid("data", "DATA: the whole message 'hello' (FIN set)", _data(b"hello", fin=True)),
        _valid(
            "data-chunk",
            "DATA: 'hel', the first chunk of a longer message (FIN clear)",
            _data(b"hel", fin=False),
        ),
        _valid("data-empty", "DATA: an empty message", _data(b"", fin=True)),
        # Other encodings a receiver must accept.
        _valid(
            "ping-shortest",
            "PING(1, 12.5) with seq as msgpack's shortest integer instead of the fixed layout",
            encode_control(FrameKind.PING, Ping(1, 12.5)),
        ),
        _valid(
            "pong-explicit-stuck",
            "PONG(1, 12.5) with stuck_for written out as 0.0 (pulsewire leaves it out)",
            _control(FrameKind.PONG, [1, 12.5, 0.0]),
        ),
        _valid(
            "hello-future-field",
            "HELLO with one more trailing field than version 1 knows: ignored",
            _control(FrameKind.HELLO, [*msgspec.structs.astuple(_FULL_HELLO), "future"]),
        ),
        _valid(
            "close-code-only",
            "CLOSE 1001 without its reason field: the reason is empty",
            _control(FrameKind.CLOSE, [1001]),
        ),
    ]


def _control(kind: FrameKind, payload: Any) -> bytes:
    """A control frame whose payload is any msgpack value (for encodings and errors that
    pulsewire's own structs never write)."""
    return _control_bytes(kind, msgspec.msgpack.encode(payload))


def _control_bytes(kind: FrameKind, payload: bytes) -> bytes:
    return frame_header(kind, 0, len(payload)) + payload


def _header(kind: int, flags: int, length: int) -> bytes:
    """A frame header alone, with any kind byte and flags (the payload never comes)."""
    return HEADER.pack(kind, flags, length)


_HELLO_FIELDS = [1.0, 0.05, 3.0, 65536, 4194304, 4194320, "peer"]
#: A HELLO with every field this version knows written out.
_FULL_HELLO = Hello(*_HELLO_FIELDS)

#: name, description, after, bytes, the close code it is meant to draw.
_Spec = tuple[str, str, str, bytes, CloseCode]


def malformed_specs() -> list[_Spec]:
    protocol, version, mismatch = (
        CloseCode.PROTOCOL_ERROR,
        CloseCode.UNSUPPORTED_VERSION,
        CloseCode.POLICY_MISMATCH,
    )
    too_large, flow, pings = CloseCode.TOO_LARGE, CloseCode.FLOW_CONTROL, CloseCode.TOO_MANY_PINGS
    chunk = bytes(64)
    return [
        (
            "wrong-magic",
            "not pulsewire: an HTTP request",
            "nothing",
            b"GET / HTTP/1.1\r\n",
            version,
        ),
        ("wrong-version", "the magic, then version 2", "nothing", b"PWIR\x02", version),
        (
            "data-before-hello",
            "a DATA frame where HELLO must come",
            "preamble",
            _data(b"hello", fin=True),
            protocol,
        ),
        (
            "ping-before-hello",
            "a PING where HELLO must come",
            "preamble",
            ping_frame(1, 1.0),
            protocol,
        ),
        (
            "hello-not-an-array",
            "HELLO whose payload is a msgpack map, not an array",
            "preamble",
            _control(FrameKind.HELLO, {"interval": 1.0}),
            protocol,
        ),
        (
            "hello-zero-interval",
            "HELLO with interval 0 (out of bounds: 0 < interval <= 86400)",
            "preamble",
            _control(FrameKind.HELLO, [0.0, *_HELLO_FIELDS[1:]]),
            protocol,
        ),
        (
            "hello-name-too-long",
            "HELLO with a 257-character name (at most 256)",
            "preamble",
            _control(FrameKind.HELLO, [*_HELLO_FIELDS[:6], "x" * 257]),
            protocol,
        ),
        (
            "hello-policy-mismatch",
            "HELLO accepting pings at most every 5 s: the receiver's 3 s timeout cannot be met",
            "preamble",
            _control(FrameKind.HELLO, [1.0, 5.0, *_HELLO_FIELDS[2:]]),
            mismatch,
        ),
        ("unknown-kind", "a frame of kind 7", "hello", _header(7, 0, 0), protocol),
        (
            "reserved-flag",
            "a PING with flag 0x01 set (only DATA has a flag)",
            "hello",
            _header(FrameKind.PING, 1, 0),
            protocol,
        ),
        (
            "data-reserved-flag",
            "a DATA frame with flag 0x02 set (reserved)",
            "hello",
            _header(FrameKind.DATA, 2, 0),
            protocol,
        ),
        (
            "control-too-large",
            f"a PING header announcing {MAX_CONTROL_PAYLOAD + 1} payload bytes: refused on the "
            "header, before any payload",
            "hello",
            _header(FrameKind.PING, 0, MAX_CONTROL_PAYLOAD + 1),
            too_large,
        ),
        (
            "data-frame-too-large",
            f"a DATA header announcing {RECEIVER_LIMITS.max_frame_size + 1} bytes, over the "
            "receiver's max_frame_size: refused on the header",
            "hello",
            _header(FrameKind.DATA, FLAG_FIN, RECEIVER_LIMITS.max_frame_size + 1),
            too_large,
        ),
        (
            "message-too-large",
            f"a message of {2 * len(chunk) + 1} bytes in three chunks, over the receiver's "
            f"max_message_size of {RECEIVER_LIMITS.max_message_size}",
            "hello",
            _data(chunk, fin=False) + _data(chunk, fin=False) + _data(b"!", fin=True),
            too_large,
        ),
        (
            "credit-exceeded",
            f"four messages of {len(chunk)} bytes (80 credits each) against the receiver's "
            f"window of {RECEIVER_LIMITS.effective_receive_window + 16}, none consumed",
            "hello",
            _data(chunk, fin=True) * 4,
            flow,
        ),
        (
            "empty-chunk",
            "an empty DATA chunk without FIN",
            "hello",
            _data(b"", fin=False),
            protocol,
        ),
        (
            "pong-never-pinged",
            "a PONG answering PING 5, which the receiver never sent",
            "hello",
            pong_frame(5, 0.0),
            protocol,
        ),
        (
            "ping-time-not-a-number",
            "a PING whose sent_at is NaN",
            "hello",
            ping_frame(1, math.nan),
            protocol,
        ),
        (
            "ping-negative-seq",
            "a PING with seq -1 (0 <= seq <= 2^62)",
            "hello",
            _control(FrameKind.PING, [-1, 1.0]),
            protocol,
        ),
        (
            "hello-twice",
            "a second HELLO",
            "hello",
            PEER_OPENING[len(PREAMBLE) :],
            protocol,
        ),
        (
            "close-code-out-of-range",
            "CLOSE with code 70000 (0 <= code <= 65535)",
            "hello",
            _control(FrameKind.CLOSE, [70000, ""]),
            protocol,
        ),
        (
            "credit-zero",
            "CREDIT of 0 bytes (1 <= increment <= 2^31)",
            "hello",
            _control(FrameKind.CREDIT, [0]),
            protocol,
        ),
        (
            "truncated-payload",
            "a PONG whose msgpack payload ends inside its float",
            "hello",
            _control_bytes(FrameKind.PONG, bytes.fromhex("9201cb4029")),
            protocol,
        ),
        (
            "too-many-pings",
            "ten PINGs at once from a peer that announced a 1 s interval: the receiver allows "
            "one every half interval plus a burst of 3 + timeout / (interval / 2) = 9",
            "hello",
            b"".join(ping_frame(seq, 1.0) for seq in range(1, 11)),
            pings,
        ),
    ]


_CONTEXT: dict[str, Callable[[], bytes]] = {
    "nothing": lambda: b"",
    "preamble": lambda: PREAMBLE,
    "hello": lambda: PEER_OPENING,
}


def run_receiver(after: str, data: bytes) -> tuple[int | None, bool | None]:
    """Feed a fresh receiver what ``after`` names, then ``data``: the CLOSE code it sent
    (None if it sent none) and whether its handshake failed (None if it did not die)."""
    session = Session(RECEIVER_POLICY, RECEIVER_LIMITS, now=0.0, initiator=False)
    context = _CONTEXT[after]()
    if context:
        session.receive_data(context, 0.0)
        assert session.death is None, f"the context {after!r} alone killed the receiver"
    session.data_to_send()
    session.receive_data(data, 0.0)
    if session.death is None:
        return None, None
    sent = FrameDecoder(max_frame_size=2**31)
    sent.feed(PREAMBLE)
    closes = [
        decode_control(frame)
        for frame in sent.feed(_strip_preamble(bytes(session.data_to_send())))
        if frame.kind is FrameKind.CLOSE
    ]
    code = closes[-1].code if closes and isinstance(closes[-1], Close) else None
    return code, isinstance(session.death.error, HandshakeError)


def _strip_preamble(data: bytes) -> bytes:
    return data[len(PREAMBLE) :] if data.startswith(PREAMBLE) else data


def malformed_inputs() -> list[MalformedInput]:
    inputs = []
    for name, description, after, data, meant in malformed_specs():
        code, handshake = run_receiver(after, data)
        if code != meant:
            raise SystemExit(
                f"{name}: meant to draw CLOSE {meant.value} ({meant.name}), but the receiver "
                f"sent {code}: fix the vector or the session"
            )
        inputs.append(
            MalformedInput(
                name=name,
                description=description,
                after=after,  # type: ignore[arg-type]
                hex=data.hex(),
                close_code=meant.value,
                close_name=meant.name,
                error="handshake" if handshake else "protocol",
            )
        )
    return inputs


def build() -> Vectors:
    return Vectors(
        format=1,
        protocol_version=VERSION,
        about=ABOUT,
        preamble=PREAMBLE.hex(),
        peer_opening=PEER_OPENING.hex(),
        receiver=Receiver(role="responder", policy=RECEIVER_POLICY, limits=RECEIVER_LIMITS),
        valid=valid_frames(),
        malformed=malformed_inputs(),
    )


def render() -> bytes:
    return msgspec.json.format(msgspec.json.encode(build()), indent=2) + b"\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_bytes() != text:
            print(
                f"{OUTPUT} is out of date: run .venv/bin/python scripts/make_test_vectors.py",
                file=sys.stderr,
            )
            return 1
        return 0
    OUTPUT.write_bytes(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
