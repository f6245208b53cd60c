"""Decoding never escapes: random bytes, mutated real streams and hostile frames, torn
anywhere, with time passing, reach the decoder and the session without an exception
escaping (the decoder raises only ProtocolError; the session nothing). The rules checked
on the way are in ``harness.py``, which the long-run fuzzer (``fuzz.py``) shares.
"""

from __future__ import annotations

import math
import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulsewire.core.frames import (
    HEARTBEAT_FRAME_SIZE,
    LONG_HEARTBEAT_FRAME_SIZE,
    MAX_WIRE_COUNT,
    FrameKind,
    Ping,
    Pong,
    parse_heartbeat,
    ping_frame,
    pong_frame,
)

from .harness import HEADER_BYTES, run_input, seed_inputs
from .strategies import frames

FAST = settings(max_examples=300, deadline=None)
SEEDS = seed_inputs()
headers = st.binary(min_size=HEADER_BYTES, max_size=HEADER_BYTES)


@FAST
@given(st.binary(max_size=600))
def test_random_bytes_break_no_rule(data: bytes) -> None:
    run_input(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real stream with a few bytes flipped, inserted, deleted, or spliced from another."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        where = draw(st.integers(HEADER_BYTES, max(HEADER_BYTES, len(data))))
        choice = draw(st.integers(0, 4))
        if choice == 0 and where < len(data):
            data[where] = draw(st.integers(0, 255))
        elif choice == 1:
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        elif choice == 2:
            del data[where : where + draw(st.integers(1, 64))]
        elif choice == 3:
            other = draw(st.sampled_from(SEEDS))
            start = draw(st.integers(HEADER_BYTES, len(other)))
            data[where:where] = other[start : start + draw(st.integers(1, 200))]
        else:
            data[1:HEADER_BYTES] = draw(st.binary(min_size=2, max_size=2))  # tear, time
    return bytes(data)


@FAST
@given(mutated())
def test_mutated_real_streams_break_no_rule(data: bytes) -> None:
    run_input(data)


finite = st.floats(allow_nan=False, allow_infinity=False)
odd = st.one_of(finite, st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 2.0**60]))
counts = st.one_of(st.integers(0, 2**64 - 1), st.just(MAX_WIRE_COUNT + 1))
heartbeats = st.one_of(
    st.builds(Ping, st.integers(0, 2**32), odd, st.none() | odd, odd, st.none() | counts),
    st.builds(Pong, st.integers(0, 2**32), odd, odd, st.none() | odd, st.none() | counts),
)
_LONG = struct.Struct("!BBIBBIBdBdBdBQ")


def long_layout(kind: FrameKind, seq: int, sent_at: float, x: float, y: float, count: int) -> bytes:
    """A PING or PONG in the fixed long layout, whatever its values."""
    cb = 0xCB
    return _LONG.pack(
        kind, 0, _LONG.size - 6, 0x95, 0xCE, seq, cb, sent_at, cb, x, cb, y, 0xCF, count
    )


def as_layout(heartbeat: Ping | Pong) -> bytes:
    """The heartbeat in a fixed layout where one holds it, else its msgpack encoding."""
    if isinstance(heartbeat, Ping):
        return ping_frame(*msgspec.structs.astuple(heartbeat))
    return pong_frame(*msgspec.structs.astuple(heartbeat))


@FAST
@given(
    headers,
    st.lists(st.one_of(frames().map(lambda pair: pair[1]), heartbeats.map(as_layout)), max_size=20),
)
def test_hostile_frames_after_a_valid_opening_break_no_rule(
    header: bytes, stream: list[bytes]
) -> None:
    run_input(bytes([header[0] | 2]) + header[1:] + b"".join(stream))


def slow_decode(frame: bytes) -> Ping | Pong | None:
    """What msgspec makes of a heartbeat frame's payload (None: it refuses it)."""
    kind = Ping if frame[0] == FrameKind.PING else Pong
    try:
        return msgspec.msgpack.decode(frame[6:], type=kind)
    except msgspec.MsgspecError:
        return None


def same(a: Ping | Pong | None, b: Ping | Pong | None) -> bool:
    if a is None or b is None:
        return a is b
    values = zip(msgspec.structs.astuple(a), msgspec.structs.astuple(b), strict=True)
    return type(a) is type(b) and all(x == y or (x != x and y != y) for x, y in values)


@FAST
@given(
    st.sampled_from([FrameKind.PING, FrameKind.PONG]),
    st.integers(0, 2**32 - 1),
    odd,
    odd,
    odd,
    counts,
)
def test_the_fixed_heartbeat_layout_accepts_exactly_what_msgspec_accepts(
    kind: FrameKind, seq: int, sent_at: float, x: float, y: float, count: int
) -> None:
    frame = long_layout(kind, seq, sent_at, x, y, min(count, 2**64 - 1))
    assert len(frame) == LONG_HEARTBEAT_FRAME_SIZE
    fast = parse_heartbeat(frame)
    slow = slow_decode(frame)
    # The fast path may pass a frame on to msgspec (None), never accept what it refuses.
    assert fast is None or same(fast, slow)
    if slow is None:
        assert fast is None


@FAST
@given(st.binary(min_size=HEARTBEAT_FRAME_SIZE, max_size=LONG_HEARTBEAT_FRAME_SIZE))
def test_any_bytes_the_fast_path_accepts_msgspec_reads_the_same(data: bytes) -> None:
    fast = parse_heartbeat(data)
    if fast is not None:
        assert same(fast, slow_decode(data))


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 0.5, 1e9, 2.0**60])
def test_heartbeat_fields_in_the_fixed_layout_keep_their_bounds(value: float) -> None:
    clock_ok = -(2.0**53) <= value <= 2.0**53  # echo, stamp (NaN compares false)
    duration_ok = 0.0 <= value <= 86_400  # held, stuck_for
    for frame, ok in (
        (long_layout(FrameKind.PING, 1, 0.5, value, 0.0, 1), clock_ok),  # echo
        (long_layout(FrameKind.PING, 1, 0.5, 0.0, value, 1), duration_ok),  # held
        (long_layout(FrameKind.PONG, 1, 0.5, value, 0.0, 1), duration_ok),  # stuck_for
        (long_layout(FrameKind.PONG, 1, 0.5, 0.0, value, 1), clock_ok),  # stamp
    ):
        assert (parse_heartbeat(frame) is not None, slow_decode(frame) is not None) == (ok, ok)
    too_many = long_layout(FrameKind.PONG, 1, 0.5, 0.0, 0.5, MAX_WIRE_COUNT + 1)
    assert (parse_heartbeat(too_many), slow_decode(too_many)) == (None, None)
