"""Wire protocol v1: the byte layout of frames and the control payloads.

A connection starts, in each direction, with a 5-byte preamble ``b"PWIR" + version`` and
then a stream of frames::

    preamble  | 'P' 'W' 'I' 'R' | version: u8 |
    frame     | kind: u8 | flags: u8 | length: u32 big-endian | payload: length bytes |

The first frame each side sends is HELLO. Control payloads (HELLO, PING, PONG, CLOSE,
CREDIT) are msgpack arrays produced by msgspec ``Struct``s with ``array_like=True``; the
protocol evolves by appending fields with defaults, which older decoders ignore, and
trailing fields at their default may be left out. PING and PONG are written with one fixed
layout (see :func:`ping_frame`) that both sides can parse without a msgpack decoder; any
other valid msgpack encoding of them is accepted too. DATA
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
    "FLAG_FIN",
    "HEADER",
    "HEADER_SIZE",
    "HEARTBEAT_FRAME_SIZE",
    "MAGIC",
    "MAX_CONTROL_PAYLOAD",
    "MAX_FIXED_SEQ",
    "MESSAGE_OVERHEAD",
    "PREAMBLE",
    "PREAMBLE_SIZE",
    "VERSION",
    "Close",
    "CloseCode",
    "Credit",
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
    INTERNAL_ERROR = 1011  #: the local side failed

    @classmethod
    def is_valid(cls, code: int) -> bool:
        """True for a code a CLOSE may carry: one of these, or 4000-4999."""
        return code in cls._value2member_map_ or 4000 <= code <= 4999


# Bounds checked when a peer's HELLO is decoded (msgspec checks them on decode only).
_Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
_Bytes = Annotated[int, msgspec.Meta(ge=1, le=2**31)]
_Name = Annotated[str, msgspec.Meta(max_length=256)]
_Reason = Annotated[str, msgspec.Meta(max_length=1024)]
_Seq = Annotated[int, msgspec.Meta(ge=0, le=2**62)]


class Hello(msgspec.Struct, frozen=True, array_like=True):
    """First frame from each side: what it wants, what it accepts, what it can take."""

    interval: _Seconds  #: how often this side wants to ping when idle
    min_interval: _Seconds  #: the fastest ping rate it accepts from the peer
    timeout: _Seconds  #: silence after which it convicts the peer (informational)
    max_frame_size: _Bytes  #: largest DATA frame payload it accepts
    max_message_size: _Bytes  #: largest reassembled message it accepts
    window: _Bytes  #: initial receive credit in bytes
    name: _Name = ""  #: optional, for the peer's logs


class Ping(msgspec.Struct, frozen=True, array_like=True, gc=False):
    seq: _Seq
    sent_at: float  #: the sender's monotonic clock; echoed so RTT uses one clock


class Pong(msgspec.Struct, frozen=True, array_like=True, gc=False):
    seq: _Seq
    sent_at: float  #: copied from the PING
    #: How long the answering side's application has left a received message unconsumed,
    #: when that exceeds its ``progress_timeout``; 0.0 when it is making progress.
    stuck_for: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 0.0


class Close(msgspec.Struct, frozen=True, array_like=True):
    code: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    reason: _Reason = ""


class Credit(msgspec.Struct, frozen=True, array_like=True, gc=False):
    increment: _Bytes  #: bytes the sender may send beyond its current credit


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
    """Append a whole control frame to ``out``, encoding the payload in place (no copies)."""
    start = len(out)
    out += _HEADER_PLACEHOLDER
    _encoder.encode_into(payload, out, start + HEADER_SIZE)
    _pack_header_into(out, start, kind, 0, len(out) - start - HEADER_SIZE)


# PING and PONG in one fixed layout: header, then the msgpack array [seq as uint32, sent_at
# as float64] (a decoder accepts a wider-than-needed integer, so this is valid msgpack that
# any decoder reads). A heartbeat is the one frame an idle connection exchanges: writing and
# parsing it takes one struct call instead of a msgpack round trip.
_FIXARRAY_2, _UINT32 = 0x92, 0xCE
_FLOAT64 = 0xCB
#: The largest sequence number the fixed layout holds.
MAX_FIXED_SEQ: Final = 2**32 - 1
_HEARTBEAT_PAYLOAD = struct.Struct("!BBIBd")
_HEARTBEAT_FRAME = struct.Struct("!" + HEADER.format[1:] + _HEARTBEAT_PAYLOAD.format[1:])
#: Size of a PING or PONG frame written in the fixed layout.
HEARTBEAT_FRAME_SIZE: Final = _HEARTBEAT_FRAME.size


# The fixed layout's packers, with everything but (seq, float tag, sent_at) bound.
_HEAD = (0, _HEARTBEAT_PAYLOAD.size, _FIXARRAY_2, _UINT32)
_pack_ping = functools.partial(_HEARTBEAT_FRAME.pack, FrameKind.PING, *_HEAD)
_pack_pong = functools.partial(_HEARTBEAT_FRAME.pack, FrameKind.PONG, *_HEAD)


def ping_frame(seq: int, sent_at: float) -> bytes:
    """A whole PING frame (the fixed layout when ``seq`` fits it)."""
    if seq > MAX_FIXED_SEQ:
        return encode_control(FrameKind.PING, Ping(seq, sent_at))
    return _pack_ping(seq, _FLOAT64, sent_at)


def pong_frame(seq: int, sent_at: float, stuck_for: float = 0.0) -> bytes:
    """A whole PONG frame (``stuck_for`` at its default 0.0 is left out)."""
    if stuck_for or seq > MAX_FIXED_SEQ:
        return encode_control(FrameKind.PONG, Pong(seq, sent_at, stuck_for))
    return _pack_pong(seq, _FLOAT64, sent_at)


def _is_fixed(array_tag: int, int_tag: int, float_tag: int) -> bool:
    return array_tag == _FIXARRAY_2 and int_tag == _UINT32 and float_tag == _FLOAT64


def decode_heartbeat(payload: bytes) -> tuple[int, float] | None:
    """``(seq, sent_at)`` of a PING or PONG payload in the fixed layout; None for any other
    encoding (which the msgpack decoder then reads)."""
    if len(payload) != _HEARTBEAT_PAYLOAD.size:
        return None
    array_tag, int_tag, seq, float_tag, sent_at = _HEARTBEAT_PAYLOAD.unpack(payload)
    return (seq, sent_at) if _is_fixed(array_tag, int_tag, float_tag) else None


def parse_heartbeat(data: bytes | bytearray | memoryview) -> tuple[FrameKind, int, float] | None:
    """``(kind, seq, sent_at)`` when ``data`` is exactly one whole PING or PONG frame in the
    fixed layout; None for anything else."""
    if len(data) != HEARTBEAT_FRAME_SIZE:
        return None
    kind, flags, length, array_tag, int_tag, seq, float_tag, sent_at = _HEARTBEAT_FRAME.unpack(data)
    if (
        (kind == FrameKind.PING or kind == FrameKind.PONG)
        and not flags
        and length == _HEARTBEAT_PAYLOAD.size
        and _is_fixed(array_tag, int_tag, float_tag)
    ):
        return _KINDS[kind], seq, sent_at
    return None


_KINDS: Final = {int(kind): kind for kind in FrameKind}
