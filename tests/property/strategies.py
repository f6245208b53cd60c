"""Hypothesis strategies for wire frames and torn byte streams."""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from pulsewire.core.codec import Frame
from pulsewire.core.frames import (
    FLAG_FIN,
    HEADER_SIZE,
    MAX_CONTROL_PAYLOAD,
    Close,
    Credit,
    FrameKind,
    Hello,
    Ping,
    Pong,
)
from pulsewire.testing import control_frame, data_frame

seqs = st.integers(0, 2**62)
stamps = st.floats(allow_nan=False)
seconds = st.floats(min_value=0.001, max_value=86_400)
sizes = st.integers(1, 2**31)

controls = st.one_of(
    st.builds(Ping, seqs, stamps),
    st.builds(Pong, seqs, stamps),
    st.builds(Close, st.integers(0, 65535), st.text(max_size=50)),
    st.builds(Credit, sizes),
    st.builds(Hello, seconds, seconds, seconds, sizes, sizes, sizes, st.text(max_size=20)),
)


@st.composite
def frames(draw: st.DrawFn, max_payload: int = 300) -> tuple[Frame, bytes]:
    """A valid frame and its encoding, made by the real encoders."""
    if draw(st.booleans()):
        payload = draw(st.binary(max_size=max_payload))
        fin = draw(st.booleans())
        encoded = data_frame(payload, fin=fin)
        return Frame(FrameKind.DATA, FLAG_FIN if fin else 0, payload), encoded
    control = draw(controls)
    encoded = control_frame(control)
    return Frame(FrameKind(encoded[0]), 0, encoded[HEADER_SIZE:]), encoded


@st.composite
def torn(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at arbitrary boundaries (pieces may be empty)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# A header of any known or unknown kind announcing up to a little over the largest payload.
headers = st.builds(
    lambda kind, flags, length: bytes([kind, flags]) + length.to_bytes(4, "big"),
    st.integers(0, 8),
    st.sampled_from([0, 0, 1, 2]),
    st.one_of(st.integers(0, 80), st.integers(MAX_CONTROL_PAYLOAD - 2, MAX_CONTROL_PAYLOAD + 2)),
)
fillers = st.one_of(
    st.integers(0, 80), st.integers(MAX_CONTROL_PAYLOAD - 2, MAX_CONTROL_PAYLOAD + 8)
).map(bytes)

# Raw bytes mixed with valid frames, bare headers and long runs of payload, so the decoder
# meets plausible headers and frames as large as it accepts.
noise = st.lists(
    st.one_of(
        st.binary(max_size=40),
        frames(max_payload=40).map(lambda pair: pair[1]),
        headers,
        fillers,
    ),
    max_size=12,
).map(b"".join)


@st.composite
def full_frames(draw: st.DrawFn, max_frame_size: int) -> bytes:
    """A frame of any kind whose length is anything up to the limit for its kind, often the
    limit itself; the payload is not meant to decode."""
    kind = draw(st.sampled_from(FrameKind))
    limit = max_frame_size if kind is FrameKind.DATA else MAX_CONTROL_PAYLOAD
    length = draw(st.one_of(st.just(limit), st.integers(0, limit)))
    return bytes([kind, 0]) + length.to_bytes(4, "big") + bytes(length)
