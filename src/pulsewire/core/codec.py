"""Incremental frame decoder: bytes in, frames out.

Goals, in the order they matter:

- **bounded memory**: a frame's declared length is checked against the limit for its kind
  *before* any of its payload is buffered, so the decoder never holds more than one frame's
  unread bytes plus the read being parsed, whatever the peer sends;
- **fail early**: a wrong magic is rejected on the first byte that differs, an unknown kind
  or reserved flag on its header, each as a :class:`ProtocolError` with the close code to send;
- **linear time**: every byte is looked at once; the unparsed tail is kept, never rescanned
  (a caller that takes the frames of a read a batch at a time moves its rest once a batch);
- **safe against dribbling**: a peer that sends one byte at a time costs a little CPU per
  byte, never memory.
"""

from __future__ import annotations

from typing import NamedTuple

from pulsewire.core.frames import (
    FLAG_FIN,
    HEADER,
    HEADER_SIZE,
    LONG_HEARTBEAT_FRAME_SIZE,
    MAGIC,
    MAX_CONTROL_PAYLOAD,
    PREAMBLE,
    PREAMBLE_SIZE,
    VERSION,
    CloseCode,
    FrameKind,
    Ping,
    Pong,
    parse_heartbeat,
)
from pulsewire.errors import HandshakeError, ProtocolError

__all__ = ["Frame", "FrameDecoder"]

_KINDS = {int(kind): kind for kind in FrameKind}
_LONGEST_HEARTBEAT = LONG_HEARTBEAT_FRAME_SIZE
_ALLOWED_FLAGS = {kind: (FLAG_FIN if kind is FrameKind.DATA else 0) for kind in FrameKind}
_unpack_header = HEADER.unpack_from
_tuple_new = tuple.__new__  # what NamedTuple._make uses: no Python-level __new__ per frame


class Frame(NamedTuple):
    kind: FrameKind
    flags: int
    payload: bytes


_Spec = tuple[FrameKind, int, int]
_specs_cache: dict[int, dict[int, _Spec]] = {}


def _specs_for(max_frame_size: int) -> dict[int, _Spec]:
    """kind byte -> (kind, flags allowed, largest payload): one lookup checks a header.

    Shared by every decoder with the same limit (the table is never mutated).
    """
    specs = _specs_cache.get(max_frame_size)
    if specs is None:
        specs = _specs_cache[max_frame_size] = {
            byte: (
                kind,
                _ALLOWED_FLAGS[kind],
                max_frame_size if kind is FrameKind.DATA else MAX_CONTROL_PAYLOAD,
            )
            for byte, kind in _KINDS.items()
        }
    return specs


class FrameDecoder:
    """Parse the preamble and then frames from a byte stream fed in arbitrary pieces."""

    __slots__ = (
        "_buffer",
        "_error",
        "_preamble_seen",
        "_specs",
        "at_frame_boundary",
        "max_frame_size",
    )

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._specs = _specs_for(max_frame_size)
        self._buffer = bytearray()
        self._preamble_seen = False
        self._error: ProtocolError | None = None
        #: True when the next byte fed starts a frame: preamble seen, nothing pending.
        self.at_frame_boundary = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames (a frame in progress)."""
        return len(self._buffer)

    def whole_heartbeat(self, data: bytes | bytearray | memoryview) -> Ping | Pong | None:
        """The PING or PONG when ``data`` is exactly one such frame in a fixed layout and
        nothing is pending: the one read an idle connection gets per interval, parsed in
        one step. None for anything else, which :meth:`feed` takes.
        """
        if not self.at_frame_boundary or self._error or len(data) > _LONGEST_HEARTBEAT:
            return None
        return parse_heartbeat(data)

    def feed(self, data: bytes | bytearray | memoryview, limit: int = 0) -> list[Frame]:
        """Return every frame completed by ``data``; raise :class:`ProtocolError` on garbage.

        ``data`` may be a view of a buffer the caller reuses: whatever is kept is copied.
        Frames completed before the garbage in the same read are returned first, and the
        error is raised by the next call (or :meth:`raise_pending`), so the outcome does
        not depend on how the bytes happened to be split.

        ``limit``: return at most this many frames (0: no limit) and keep the rest of the
        bytes; ``feed(b"", limit)`` returns the next ones. The bound on memory holds: what
        is kept is the rest of one read.
        """
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if buffer:
            buffer += data
            view: bytes | bytearray | memoryview = buffer
        else:
            view = data
        end = len(view)
        pos = 0
        if not self._preamble_seen:
            pos = self._check_preamble(view)
            if not self._preamble_seen:
                self._keep(view, 0, end)
                return []
        frames: list[Frame] = []
        specs = self._specs
        while end - pos >= HEADER_SIZE:
            kind_byte, flags, length = _unpack_header(view, pos)
            spec = specs.get(kind_byte)
            if spec is None or flags & ~spec[1] or length > spec[2]:
                try:
                    self._check_header(kind_byte, flags, length)  # raises, with the reason
                except ProtocolError as error:
                    if not frames:
                        raise
                    self._error = error
                    self._buffer = bytearray()
                    self.at_frame_boundary = False
                    return frames
                raise AssertionError("unreachable: the header was refused")  # pragma: no cover
            start = pos + HEADER_SIZE
            if end - start < length:
                break
            pos = start + length
            frames.append(_tuple_new(Frame, (spec[0], flags, bytes(view[start:pos]))))
            if len(frames) == limit:
                break
        self._keep(view, pos, end)
        return frames

    def raise_pending(self) -> None:
        """Raise the error found after the frames the last :meth:`feed` returned, if any."""
        if self._error is not None:
            raise self._error

    def feed_eof(self) -> None:
        """The stream ended: raise if it ended inside the preamble or a frame."""
        self.raise_pending()
        if self._buffer:
            raise ProtocolError(f"stream ended inside a frame ({len(self._buffer)} bytes pending)")

    def _keep(self, view: bytes | bytearray | memoryview, pos: int, end: int) -> None:
        if view is self._buffer:
            del self._buffer[:pos]
        elif pos < end:
            self._buffer = bytearray(view[pos:end])
        self.at_frame_boundary = self._preamble_seen and not self._buffer

    def _check_preamble(self, view: bytes | bytearray | memoryview) -> int:
        have = min(len(view), PREAMBLE_SIZE)
        got = bytes(view[:have])
        magic_part = min(have, len(MAGIC))
        if got[:magic_part] != MAGIC[:magic_part]:
            raise HandshakeError(
                f"not a pulsewire peer: expected magic {MAGIC!r}, got {got[:magic_part]!r}",
                CloseCode.UNSUPPORTED_VERSION,
            )
        if have < PREAMBLE_SIZE:
            return 0
        if got != PREAMBLE:
            raise HandshakeError(
                f"unsupported protocol version {got[-1]} (this side speaks {VERSION})",
                CloseCode.UNSUPPORTED_VERSION,
            )
        self._preamble_seen = True
        return PREAMBLE_SIZE

    def _check_header(self, kind_byte: int, flags: int, length: int) -> FrameKind:
        kind = _KINDS.get(kind_byte)
        if kind is None:
            raise ProtocolError(f"unknown frame kind {kind_byte}")
        if flags & ~_ALLOWED_FLAGS[kind]:
            raise ProtocolError(f"reserved flags {flags:#x} set on {kind.name}")
        limit = self.max_frame_size if kind is FrameKind.DATA else MAX_CONTROL_PAYLOAD
        if length > limit:
            raise ProtocolError(
                f"{kind.name} frame of {length} bytes exceeds the limit of {limit}",
                CloseCode.TOO_LARGE,
            )
        return kind
