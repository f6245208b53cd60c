from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pulsewire.core.codec import Frame, FrameDecoder
from pulsewire.core.frames import HEADER_SIZE, MAX_CONTROL_PAYLOAD, PREAMBLE
from pulsewire.errors import ProtocolError

from .strategies import frames, full_frames, noise, torn

FAST = settings(max_examples=200, deadline=None)


@FAST
@given(st.lists(frames(), max_size=15), st.data())
def test_valid_frames_torn_anywhere_decode_to_the_same_frames(
    sequence: list[tuple[Frame, bytes]], data: st.DataObject
) -> None:
    stream = PREAMBLE + b"".join(encoded for _, encoded in sequence)
    decoder = FrameDecoder(max_frame_size=300)
    decoded = [f for piece in data.draw(torn(stream)) for f in decoder.feed(piece)]
    assert decoded == [frame for frame, _ in sequence]
    assert decoder.buffered == 0
    decoder.feed_eof()


@FAST
@given(st.binary(max_size=200), st.booleans())
def test_arbitrary_bytes_raise_nothing_but_protocol_error(garbage: bytes, preamble: bool) -> None:
    decoder = FrameDecoder(max_frame_size=64)
    try:
        decoder.feed((PREAMBLE if preamble else b"") + garbage)
        decoder.feed_eof()
    except ProtocolError:
        pass


def feed_and_check_bound(decoder: FrameDecoder, pieces: list[bytes]) -> None:
    bound = HEADER_SIZE + max(decoder.max_frame_size, MAX_CONTROL_PAYLOAD)
    for piece in pieces:
        try:
            decoder.feed(piece)
        except ProtocolError:
            return
        assert decoder.buffered < bound


@FAST
@given(st.integers(1, 10_000), st.data())
def test_decoder_never_buffers_more_than_one_frame(
    max_frame_size: int, data: st.DataObject
) -> None:
    frames = data.draw(st.lists(full_frames(max_frame_size), min_size=1, max_size=4))
    stream = PREAMBLE + b"".join(frames)
    cut = data.draw(st.one_of(st.integers(0, 8), st.integers(0, len(stream))))
    stream = stream[: len(stream) - cut]  # often one byte short of a whole frame
    feed_and_check_bound(FrameDecoder(max_frame_size), data.draw(torn(stream)))


@FAST
@given(st.integers(1, 64), noise, st.data())
def test_decoder_never_buffers_more_than_one_frame_of_noise(
    max_frame_size: int, stream: bytes, data: st.DataObject
) -> None:
    feed_and_check_bound(FrameDecoder(max_frame_size), data.draw(torn(PREAMBLE + stream)))
