from __future__ import annotations

import pytest

from pulsewire.core.codec import Frame, FrameDecoder
from pulsewire.core.frames import (
    FLAG_FIN,
    HEADER_SIZE,
    MAX_CONTROL_PAYLOAD,
    PREAMBLE,
    CloseCode,
    FrameKind,
    Ping,
    frame_header,
)
from pulsewire.errors import HandshakeError, ProtocolError
from pulsewire.testing import control_frame, data_frame

PING = control_frame(Ping(1, 0.0))
STREAM = PREAMBLE + data_frame(b"hello") + PING + data_frame(b"", fin=True)


def expected() -> list[Frame]:
    return [
        Frame(FrameKind.DATA, FLAG_FIN, b"hello"),
        Frame(FrameKind.PING, 0, PING[HEADER_SIZE:]),
        Frame(FrameKind.DATA, FLAG_FIN, b""),
    ]


def test_whole_stream_decodes_in_one_feed() -> None:
    assert FrameDecoder(1024).feed(STREAM) == expected()


def test_stream_fed_one_byte_at_a_time_decodes_the_same() -> None:
    decoder = FrameDecoder(1024)
    frames = [f for i in range(len(STREAM)) for f in decoder.feed(STREAM[i : i + 1])]
    assert frames == expected()
    assert decoder.buffered == 0


def test_partial_magic_waits_for_more() -> None:
    decoder = FrameDecoder(1024)
    assert decoder.feed(b"PW") == []
    assert decoder.buffered == 2


def test_wrong_magic_fails_on_first_differing_byte() -> None:
    with pytest.raises(HandshakeError) as info:
        FrameDecoder(1024).feed(b"G")
    assert info.value.code is CloseCode.UNSUPPORTED_VERSION


def test_wrong_version_fails_with_unsupported_version() -> None:
    with pytest.raises(HandshakeError, match="version 2") as info:
        FrameDecoder(1024).feed(b"PWIR\x02")
    assert info.value.code is CloseCode.UNSUPPORTED_VERSION


def test_unknown_kind_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="unknown frame kind 9") as info:
        FrameDecoder(1024).feed(PREAMBLE + bytes([9, 0, 0, 0, 0, 0]))
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_fin_flag_on_a_control_frame_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="reserved flags"):
        FrameDecoder(1024).feed(PREAMBLE + frame_header(FrameKind.PING, FLAG_FIN, 0))


def test_unknown_flag_on_data_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="reserved flags"):
        FrameDecoder(1024).feed(PREAMBLE + frame_header(FrameKind.DATA, 0x02, 0))


def test_oversized_data_is_rejected_from_its_header_alone() -> None:
    with pytest.raises(ProtocolError) as info:
        FrameDecoder(1024).feed(PREAMBLE + frame_header(FrameKind.DATA, 0, 1025))
    assert info.value.code is CloseCode.TOO_LARGE


def test_data_of_exactly_max_frame_size_is_accepted() -> None:
    frames = FrameDecoder(1024).feed(PREAMBLE + data_frame(b"x" * 1024))
    assert [len(f.payload) for f in frames] == [1024]


def test_oversized_control_frame_is_rejected_whatever_max_frame_size() -> None:
    header = frame_header(FrameKind.CLOSE, 0, MAX_CONTROL_PAYLOAD + 1)
    with pytest.raises(ProtocolError) as info:
        FrameDecoder(10**6).feed(PREAMBLE + header)
    assert info.value.code is CloseCode.TOO_LARGE


def test_dribbled_large_frame_never_buffers_more_than_one_frame() -> None:
    decoder = FrameDecoder(1024)
    decoder.feed(PREAMBLE)
    stream = data_frame(b"y" * 1024) * 3
    peak = 0
    for i in range(0, len(stream), 7):
        decoder.feed(stream[i : i + 7])
        peak = max(peak, decoder.buffered)
    assert peak < HEADER_SIZE + 1024
    assert decoder.buffered == 0


def test_feed_copies_what_it_keeps_from_a_reused_buffer() -> None:
    decoder = FrameDecoder(1024)
    decoder.feed(PREAMBLE)
    buffer = bytearray(data_frame(b"abcdef"))
    decoder.feed(memoryview(buffer)[:8])
    buffer[:] = b"\xff" * len(buffer)
    assert decoder.feed(data_frame(b"abcdef")[8:]) == [Frame(FrameKind.DATA, FLAG_FIN, b"abcdef")]


def test_empty_feed_returns_nothing() -> None:
    assert FrameDecoder(1024).feed(b"") == []


def test_eof_between_frames_is_clean() -> None:
    decoder = FrameDecoder(1024)
    decoder.feed(STREAM)
    decoder.feed_eof()


@pytest.mark.parametrize("cut", [2, len(PREAMBLE) + 3, len(PREAMBLE) + HEADER_SIZE + 2])
def test_eof_inside_preamble_header_or_payload_is_a_protocol_error(cut: int) -> None:
    decoder = FrameDecoder(1024)
    decoder.feed(STREAM[:cut])
    with pytest.raises(ProtocolError, match="stream ended inside a frame"):
        decoder.feed_eof()


def test_frames_before_garbage_in_the_same_read_are_returned_then_the_error() -> None:
    decoder = FrameDecoder(1024)
    frames = decoder.feed(PREAMBLE + PING + b"\xff\x00\x00\x00\x00\x00")
    assert [frame.kind for frame in frames] == [FrameKind.PING]
    with pytest.raises(ProtocolError, match="unknown frame kind 255"):
        decoder.raise_pending()
    with pytest.raises(ProtocolError, match="unknown frame kind 255"):
        decoder.feed(PING)
