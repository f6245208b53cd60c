from __future__ import annotations

import msgspec
import pytest

from pulsewire.core.frames import (
    FLAG_FIN,
    HEADER_SIZE,
    MAX_CONTROL_PAYLOAD,
    PREAMBLE,
    Close,
    CloseCode,
    Credit,
    FrameKind,
    Hello,
    Ping,
    Pong,
    encode_control,
    frame_header,
)

HELLO = Hello(
    interval=1.0,
    min_interval=0.05,
    timeout=5.0,
    max_frame_size=65536,
    max_message_size=1 << 20,
    window=1 << 20,
    name="peer",
)


def test_preamble_is_magic_and_version() -> None:
    assert PREAMBLE == b"PWIR\x01"


def test_header_is_kind_flags_and_big_endian_length() -> None:
    assert HEADER_SIZE == 6
    assert frame_header(FrameKind.DATA, FLAG_FIN, 258) == b"\x02\x01\x00\x00\x01\x02"


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (FrameKind.HELLO, HELLO),
        (FrameKind.PING, Ping(7, 12.5)),
        (FrameKind.PONG, Pong(7, 12.5)),
        (FrameKind.CLOSE, Close(1000, "bye")),
        (FrameKind.CREDIT, Credit(4096)),
    ],
)
def test_control_frame_round_trips(kind: FrameKind, payload: msgspec.Struct) -> None:
    frame = encode_control(kind, payload)
    assert frame[0] == kind
    assert frame[1] == 0
    assert int.from_bytes(frame[2:HEADER_SIZE], "big") == len(frame) - HEADER_SIZE
    assert msgspec.msgpack.decode(frame[HEADER_SIZE:], type=type(payload)) == payload


def test_control_payload_is_a_compact_array() -> None:
    payload = encode_control(FrameKind.PING, Ping(1, 0.5))[HEADER_SIZE:]
    assert msgspec.msgpack.decode(payload) == [1, 0.5]


def test_decoder_ignores_fields_appended_by_a_newer_peer() -> None:
    newer = msgspec.msgpack.encode([1000, "bye", 7, "a field from protocol v1.1"])
    assert msgspec.msgpack.decode(newer, type=Close) == Close(1000, "bye", 7)


def test_hello_without_name_decodes_with_default() -> None:
    older = msgspec.msgpack.encode([1.0, 0.05, 5.0, 100, 100, 116])
    assert msgspec.msgpack.decode(older, type=Hello).name == ""


@pytest.mark.parametrize(
    ("index", "value"),
    [(0, 0.0), (0, -1.0), (1, 86_401.0), (3, 0), (4, 2**31 + 1), (5, -5), (6, "x" * 257)],
)
def test_hello_bounds_are_checked_on_decode(index: int, value: object) -> None:
    fields = list(msgspec.to_builtins(HELLO))
    fields[index] = value
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(msgspec.msgpack.encode(fields), type=Hello)


def test_largest_legal_hello_and_close_fit_in_a_control_frame() -> None:
    hello = Hello(
        interval=86_400.0,
        min_interval=86_400.0,
        timeout=86_400.0,
        max_frame_size=2**31,
        max_message_size=2**31,
        window=2**31,
        name="\U0001f600" * 256,
    )
    close = Close(65535, "x" * 1024)
    for kind, payload in ((FrameKind.HELLO, hello), (FrameKind.CLOSE, close)):
        assert len(encode_control(kind, payload)) - HEADER_SIZE <= MAX_CONTROL_PAYLOAD


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1008, 1009, 1011, 1013, 4000, 4999])
def test_known_and_application_close_codes_are_valid(code: int) -> None:
    assert CloseCode.is_valid(code)


@pytest.mark.parametrize("code", [0, 999, 1010, 1012, 1014, 3999, 5000, 65535])
def test_unknown_close_codes_are_invalid(code: int) -> None:
    assert not CloseCode.is_valid(code)
