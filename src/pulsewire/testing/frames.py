"""Build and read raw wire bytes, to play a misbehaving peer or to inspect what a session sent."""

from __future__ import annotations

from typing import Any

import msgspec

from pulsewire.core.codec import Frame, FrameDecoder
from pulsewire.core.frames import (
    FLAG_FIN,
    PREAMBLE,
    Close,
    Credit,
    FrameKind,
    Hello,
    Ping,
    Pong,
    encode_control,
    frame_header,
)
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.session import Session

__all__ = [
    "Control",
    "control_frame",
    "data_frame",
    "decode_control",
    "opening_bytes",
    "parse_frames",
]

Control = Hello | Ping | Pong | Close | Credit
"""The payload of any control frame."""

_KIND_OF: dict[type[Control], FrameKind] = {
    Hello: FrameKind.HELLO,
    Ping: FrameKind.PING,
    Pong: FrameKind.PONG,
    Close: FrameKind.CLOSE,
    Credit: FrameKind.CREDIT,
}
_DECODERS: dict[FrameKind, msgspec.msgpack.Decoder[Any]] = {
    kind: msgspec.msgpack.Decoder(struct) for struct, kind in _KIND_OF.items()
}


def opening_bytes(
    policy: Policy | None = None, limits: Limits | None = None, *, name: str = ""
) -> bytes:
    """The preamble and HELLO that a session with this policy and these limits sends first."""
    return bytes(Session(policy, limits, now=0.0, name=name).data_to_send())


def control_frame(payload: Control) -> bytes:
    """A whole control frame (header and payload); the kind follows from the payload's type."""
    return encode_control(_KIND_OF[type(payload)], payload)


def data_frame(payload: bytes, *, fin: bool = True) -> bytes:
    """A whole DATA frame; ``fin=False`` makes it a non-final chunk of a larger message."""
    return frame_header(FrameKind.DATA, FLAG_FIN if fin else 0, len(payload)) + payload


def parse_frames(
    data: bytes | bytearray, *, preamble: bool = True, max_frame_size: int = 2**31
) -> list[Frame]:
    """Split a complete byte stream into frames; raise ``ProtocolError`` if it is not one.

    ``preamble`` says whether ``data`` starts with the preamble (the first bytes a session
    sends) or in the middle of the stream.
    """
    decoder = FrameDecoder(max_frame_size)
    if not preamble:
        decoder.feed(PREAMBLE)
    frames = decoder.feed(data)
    decoder.feed_eof()
    return frames


def decode_control(frame: Frame) -> Control:
    """The payload of a control frame as its ``msgspec.Struct``."""
    if frame.kind is FrameKind.DATA:
        raise ValueError("a DATA frame has no control payload")
    decoded: Control = _DECODERS[frame.kind].decode(frame.payload)
    return decoded
