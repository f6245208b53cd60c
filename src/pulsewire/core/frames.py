"""Wire protocol v1: the byte layout of frames and the control payloads.

A connection starts, in each direction, with a 5-byte preamble ``b"PWIR" + version`` and
then a stream of frames::

    preamble  | 'P' 'W' 'I' 'R' | version: u8 |
    frame     | kind: u8 | flags: u8 | length: u32 big-endian | payload: length bytes |

The first frame each side sends is HELLO. Control payloads (HELLO, PING, PONG, CLOSE,
CREDIT) are msgpack arrays produced by msgspec ``Struct``s with ``array_like=True``; the
protocol evolves by appending fields with defaults, which older decoders ignore, and
trailing fields at their default may be left out; a field that a peer may not know is only
sent to a peer that announced the :class:`Feature` it belongs to. PING and PONG are written
in fixed layouts (see :func:`ping_frame`) that both sides can parse without a msgpack
decoder; any other valid msgpack encoding of them is accepted too. DATA
payloads are opaque bytes; a message larger than one frame is split into chunks, the last
of which carries ``FLAG_FIN``.
"""

from __future__ import annotations

import enum
import functools
import struct
from typing import Annotated, Final

import msgspec

__all__ = [
    "FEATURES",
    "FLAG_FIN",
    "HEADER",
    "HEADER_SIZE",
    "HEARTBEAT_FRAME_SIZE",
    "LONG_HEARTBEAT_FRAME_SIZE",
    "MAGIC",
    "MAX_CONTROL_PAYLOAD",
    "MAX_FIXED_SEQ",
    "MAX_WIRE_CLOCK",
    "MAX_WIRE_COUNT",
    "MAX_WIRE_SECONDS",
    "MESSAGE_OVERHEAD",
    "PREAMBLE",
    "PREAMBLE_SIZE",
    "VERSION",
    "Close",
    "CloseCode",
    "Credit",
    "Feature",
    "FrameKind",
    "Hello",
    "Ping",
    "Pong",
    "decode_heartbeat",
    "encode_control",
    "encode_control_into",
    "frame_header",
    "parse_heartbeat",
    "ping_frame",
    "pong_frame",
]

MAGIC: Final = b"PWIR"
VERSION: Final = 1
PREAMBLE: Final = MAGIC + bytes([VERSION])
PREAMBLE_SIZE: Final = len(PREAMBLE)

HEADER: Final = struct.Struct("!BBI")
HEADER_SIZE: Final = HEADER.size

#: Largest control payload accepted; control frames are tiny, so a bigger one is an attack.
MAX_CONTROL_PAYLOAD: Final = 4096

#: DATA flag: this chunk ends the message.
FLAG_FIN: Final = 0x01

#: Credit charged per message on top of its bytes, so a flood of empty messages is bounded too.
MESSAGE_OVERHEAD: Final = 16


class FrameKind(enum.IntEnum):
    HELLO = 1
    DATA = 2
    PING = 3
    PONG = 4
    CLOSE = 5
    CREDIT = 6


class CloseCode(enum.IntEnum):
    """Codes carried by CLOSE. 4000-4999 are free for applications."""

    NORMAL = 1000  #: orderly close
    GOING_AWAY = 1001  #: server shutting down, client leaving
    PROTOCOL_ERROR = 1002  #: malformed frame, unknown kind, bad payload
    UNSUPPORTED_VERSION = 1003  #: wrong magic or protocol version
    POLICY_MISMATCH = 1004  #: the negotiated intervals cannot meet our timeout
    TOO_MANY_PINGS = 1005  #: the peer pings faster than the negotiated minimum
    TOO_LARGE = 1006  #: frame or message larger than the advertised limit
    FLOW_CONTROL = 1007  #: the peer sent more DATA than its credit allows
    HANDSHAKE_TIMEOUT = 1008  #: no HELLO within the handshake deadline
    #: a frame or message the peer started was not completed within the receiver's deadline
    TOO_SLOW = 1009
    INTERNAL_ERROR = 1011  #: the local side failed
    #: the server is at its connection limit, or over its budget of buffered inbound bytes:
    #: it refused or shed this connection (try again later)
    OVERLOADED = 1013

    @classmethod
    def is_valid(cls, code: int) -> bool:
        """True for a code a CLOSE may carry: one of these, or 4000-4999."""
        return code in cls._value2member_map_ or 4000 <= code <= 4999


# Bounds checked when a peer's control frame is decoded (msgspec checks them on decode
# only; parse_heartbeat checks the same ones on its fast path).
#: Longest duration a control frame may carry, seconds (one day).
MAX_WIRE_SECONDS: Final = 86_400
#: Largest magnitude of a clock reading a control frame may carry (floats are exact to it).
MAX_WIRE_CLOCK: Final = 2.0**53
#: Largest count a control frame may carry (a signed 64-bit integer).
MAX_WIRE_COUNT: Final = 2**63 - 1
_Seconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_WIRE_SECONDS)]
_Duration = Annotated[float, msgspec.Meta(ge=0, le=MAX_WIRE_SECONDS)]
_Bytes = Annotated[int, msgspec.Meta(ge=1, le=2**31)]
_Name = Annotated[str, msgspec.Meta(max_length=256)]
_Reason = Annotated[str, msgspec.Meta(max_length=1024)]
_Seq = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
#: A reading of a monotonic clock: any finite number of seconds (NaN and infinities fail).
_Clock = Annotated[float, msgspec.Meta(ge=-MAX_WIRE_CLOCK, le=MAX_WIRE_CLOCK)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_WIRE_COUNT)]


class Feature(enum.IntFlag):
    """Protocol extensions, announced in HELLO; used only when both sides announce them.

    A peer that announces none (every peer before these existed) sees exactly the wire it
    always saw: no field it does not know is ever sent to it.
    """

    #: Each PONG carries the answering side's clock (``stamp``), and the next PING echoes
    #: it with how long it was held: the side that only answers pings measures RTT too.
    ECHO = 1
    #: PING and PONG carry the count of messages the sender's application has consumed, so
    #: that at any death each side knows which of its messages the peer's application had.
    PROGRESS = 2
    #: CREDIT carries that count too (a busy one-way stream sends no PING, but CREDIT as
    #: its receiver consumes), and CLOSE the count of the peer's messages its sender
    #: received: an orderly close accounts for every message.
    RECEIPTS = 4


#: What this implementation supports (and so announces).
FEATURES: Final = Feature.ECHO | Feature.PROGRESS | Feature.RECEIPTS


class Hello(msgspec.Struct, frozen=True, array_like=True):
    """First frame from each side: what it wants, what it accepts, what it can take."""

    interval: _Seconds  #: how often this side wants to ping when idle
    min_interval: _Seconds  #: the fastest ping rate it accepts from the peer
    timeout: _Seconds  #: silence after which it convicts the peer (informational)
    max_frame_size: _Bytes  #: largest DATA frame payload it accepts
    max_message_size: _Bytes  #: largest reassembled message it accepts
    window: _Bytes  #: initial receive credit in bytes
    name: _Name = ""  #: optional, for the peer's logs
    features: Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)] = 0  #: :class:`Feature` bits


class Ping(msgspec.Struct, frozen=True, array_like=True, gc=False):
    seq: _Seq
    sent_at: float  #: the sender's monotonic clock; echoed so RTT uses one clock
    #: ``Feature.ECHO``: the ``stamp`` of the latest PONG the sender received ...
    echo: _Clock | None = None
    #: ... and how long the sender held it before this PING, seconds
    held: _Duration = 0.0
    #: ``Feature.PROGRESS``: messages the sender's application has consumed so far
    consumed: _Count | None = None


class Pong(msgspec.Struct, frozen=True, array_like=True, gc=False):
    seq: _Seq
    sent_at: float  #: copied from the PING
    #: How long the answering side's application has left a received message unconsumed,
    #: when that exceeds its ``progress_timeout``; 0.0 when it is making progress.
    stuck_for: _Duration = 0.0
    #: ``Feature.ECHO``: the answering side's clock when it sent this PONG
    stamp: _Clock | None = None
    #: ``Feature.PROGRESS``: messages the answering side's application has consumed so far
    consumed: _Count | None = None


class Close(msgspec.Struct, frozen=True, array_like=True):
    code: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    reason: _Reason = ""
    #: ``Feature.RECEIPTS``: messages the sender received from its peer, all told
    received: _Count | None = None


class Credit(msgspec.Struct, frozen=True, array_like=True, gc=False):
    increment: _Bytes  #: bytes the sender may send beyond its current credit
    #: ``Feature.RECEIPTS``: messages the sender's application has consumed so far
    consumed: _Count | None = None


_encoder = msgspec.msgpack.Encoder()


def frame_header(kind: FrameKind, flags: int, length: int) -> bytes:
    return HEADER.pack(kind, flags, length)


def encode_control(kind: FrameKind, payload: msgspec.Struct) -> bytes:
    """Encode a whole control frame (header and msgpack payload) in one buffer."""
    buf = bytearray()
    encode_control_into(buf, kind, payload)
    return bytes(buf)


_HEADER_PLACEHOLDER = bytes(HEADER_SIZE)
_pack_header_into = HEADER.pack_into


def encode_control_into(out: bytearray, kind: FrameKind, payload: msgspec.Struct) -> None:
    """Append a whole control frame to ``out``, encoding the payload in place.

    Trailing fields at their defaults are left out: a peer that announced no
    :class:`Feature` sees exactly the fields it knows, and every frame is as short as it can be.
    """
    start = len(out)
    out += _HEADER_PLACEHOLDER
    _encoder.encode_into(_without_trailing_defaults(payload), out, start + HEADER_SIZE)
    _pack_header_into(out, start, kind, 0, len(out) - start - HEADER_SIZE)


_defaults_cache: dict[type, tuple[object, ...]] = {}


def _without_trailing_defaults(payload: msgspec.Struct) -> msgspec.Struct | list[object]:
    kind = type(payload)
    defaults = _defaults_cache.get(kind)
    if defaults is None:
        defaults = _defaults_cache[kind] = tuple(
            field.default for field in msgspec.structs.fields(kind)
        )
    values = msgspec.structs.astuple(payload)
    end = len(values)
    while end and values[end - 1] == defaults[end - 1]:
        end -= 1
    return payload if end == len(values) else list(values[:end])


# PING and PONG in two fixed layouts that both sides write and parse with one struct call
# (a heartbeat is the one frame an idle connection exchanges): a header, then a msgpack
# array whose elements have fixed types (a decoder accepts wider-than-needed integers, so
# any msgpack decoder reads them too):
#   short: [seq: uint32, sent_at: float64]                                  (no features)
#   long:  [seq: uint32, sent_at: float64, float64, float64, consumed: uint64]
# where the long PING's floats are echo and held, the long PONG's stuck_for and stamp.
_FIXARRAY_2, _FIXARRAY_5 = 0x92, 0x95
_UINT32, _UINT64, _FLOAT64 = 0xCE, 0xCF, 0xCB
#: The largest sequence number the fixed layouts hold.
MAX_FIXED_SEQ: Final = 2**32 - 1
_SHORT = struct.Struct("!BBIBd")
_LONG = struct.Struct("!BBIBdBdBdBQ")
_SHORT_FRAME = struct.Struct("!" + HEADER.format[1:] + _SHORT.format[1:])
_LONG_FRAME = struct.Struct("!" + HEADER.format[1:] + _LONG.format[1:])
#: Size of a PING or PONG frame written in the short fixed layout (the smallest heartbeat).
HEARTBEAT_FRAME_SIZE: Final = _SHORT_FRAME.size
#: Size of a PING or PONG frame written in the long fixed layout.
LONG_HEARTBEAT_FRAME_SIZE: Final = _LONG_FRAME.size

# The packers, with everything but the values bound.
_pack_short_ping = functools.partial(
    _SHORT_FRAME.pack, FrameKind.PING, 0, _SHORT.size, _FIXARRAY_2, _UINT32
)
_pack_short_pong = functools.partial(
    _SHORT_FRAME.pack, FrameKind.PONG, 0, _SHORT.size, _FIXARRAY_2, _UINT32
)
_pack_long_ping = functools.partial(
    _LONG_FRAME.pack, FrameKind.PING, 0, _LONG.size, _FIXARRAY_5, _UINT32
)
_pack_long_pong = functools.partial(
    _LONG_FRAME.pack, FrameKind.PONG, 0, _LONG.size, _FIXARRAY_5, _UINT32
)


def ping_frame(
    seq: int,
    sent_at: float,
    echo: float | None = None,
    held: float = 0.0,
    consumed: int | None = None,
) -> bytes:
    """A whole PING frame, in a fixed layout when its values fit one."""
    if seq <= MAX_FIXED_SEQ:
        if echo is None and consumed is None:
            return _pack_short_ping(seq, _FLOAT64, sent_at)
        if echo is not None and consumed is not None and consumed <= MAX_WIRE_COUNT:
            f = _FLOAT64
            return _pack_long_ping(seq, f, sent_at, f, echo, f, held, _UINT64, consumed)
    return encode_control(FrameKind.PING, Ping(seq, sent_at, echo, held, consumed))


def pong_frame(
    seq: int,
    sent_at: float,
    stuck_for: float = 0.0,
    stamp: float | None = None,
    consumed: int | None = None,
) -> bytes:
    """A whole PONG frame, in a fixed layout when its values fit one."""
    if seq <= MAX_FIXED_SEQ:
        if stamp is None and consumed is None and not stuck_for:
            return _pack_short_pong(seq, _FLOAT64, sent_at)
        if stamp is not None and consumed is not None and consumed <= MAX_WIRE_COUNT:
            f = _FLOAT64
            return _pack_long_pong(seq, f, sent_at, f, stuck_for, f, stamp, _UINT64, consumed)
    return encode_control(FrameKind.PONG, Pong(seq, sent_at, stuck_for, stamp, consumed))


def parse_heartbeat(data: bytes | bytearray | memoryview) -> Ping | Pong | None:
    """The PING or PONG when ``data`` is exactly one whole frame of one in a fixed layout;
    None for anything else."""
    size = len(data)
    if size == HEARTBEAT_FRAME_SIZE:
        kind, flags, length, array_tag, int_tag, seq, float_tag, sent_at = _SHORT_FRAME.unpack(data)
        if (
            array_tag == _FIXARRAY_2
            and int_tag == _UINT32
            and float_tag == _FLOAT64
            and not flags
            and length == _SHORT.size
        ):
            if kind == FrameKind.PING:
                return Ping(seq, sent_at)
            if kind == FrameKind.PONG:
                return Pong(seq, sent_at)
    elif size == LONG_HEARTBEAT_FRAME_SIZE:
        kind, flags, length, array_tag, int_tag, seq, f1, sent_at, f2, x, f3, y, u, count = (
            _LONG_FRAME.unpack(data)
        )
        if (
            array_tag == _FIXARRAY_5
            and int_tag == _UINT32
            and f1 == f2 == f3 == _FLOAT64
            and u == _UINT64
            and not flags
            and length == _LONG.size
            and count <= MAX_WIRE_COUNT
        ):
            # The bounds msgspec checks on the slow path; out of them (NaN included), the
            # slow path decodes the payload again and reports what is wrong.
            if kind == FrameKind.PING:
                if -MAX_WIRE_CLOCK <= x <= MAX_WIRE_CLOCK and 0.0 <= y <= MAX_WIRE_SECONDS:
                    return Ping(seq, sent_at, x, y, count)  # echo, held
            elif (
                kind == FrameKind.PONG
                and 0.0 <= x <= MAX_WIRE_SECONDS
                and -MAX_WIRE_CLOCK <= y <= MAX_WIRE_CLOCK
            ):
                return Pong(seq, sent_at, x, y, count)  # stuck_for, stamp
    return None


def decode_heartbeat(kind: FrameKind, payload: bytes) -> Ping | Pong | None:
    """The PING or PONG of this payload when it is in a fixed layout; None for any other
    encoding (which the msgpack decoder then reads)."""
    return parse_heartbeat(HEADER.pack(kind, 0, len(payload)) + payload)
