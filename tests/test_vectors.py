"""The protocol's test vectors (``pulsewire.testing.load_vectors``) agree with the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from pulsewire.core.frames import (
    FLAG_FIN,
    PREAMBLE,
    VERSION,
    Close,
    CloseCode,
    Credit,
    FrameKind,
    Hello,
    Ping,
    Pong,
    ping_frame,
    pong_frame,
)
from pulsewire.core.session import Session
from pulsewire.core.states import Reason
from pulsewire.errors import HandshakeError, ProtocolError
from pulsewire.testing import (
    Control,
    MalformedInput,
    ValidFrame,
    control_frame,
    data_frame,
    decode_control,
    load_vectors,
    parse_frames,
)

ROOT = Path(__file__).resolve().parent.parent
VECTORS = load_vectors()
STRUCTS: dict[str, type[Control]] = {
    "HELLO": Hello,
    "PING": Ping,
    "PONG": Pong,
    "CLOSE": Close,
    "CREDIT": Credit,
}
CONTEXT = {
    "nothing": b"",
    "preamble": PREAMBLE,
    "hello": bytes.fromhex(VECTORS.peer_opening),
}


def test_the_file_is_what_the_encoder_writes_today() -> None:
    """``scripts/make_test_vectors.py`` regenerates it from the code: no drift."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_test_vectors.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_the_file_covers_every_frame_kind_and_close_code_a_receiver_sends() -> None:
    assert VECTORS.protocol_version == VERSION
    assert bytes.fromhex(VECTORS.preamble) == PREAMBLE
    assert {vector.kind for vector in VECTORS.valid} == {kind.name for kind in FrameKind}
    sent = {vector.close_code for vector in VECTORS.malformed}
    peer_faults = set(CloseCode) - {
        CloseCode.NORMAL,
        CloseCode.GOING_AWAY,
        CloseCode.HANDSHAKE_TIMEOUT,  # a matter of time, not of bytes
        CloseCode.TOO_SLOW,  # so is a frame left incomplete
        CloseCode.OVERLOADED,  # the receiver's own load
        CloseCode.INTERNAL_ERROR,  # the receiver's own failure
    }
    assert sent == {code.value for code in peer_faults}
    names = [vector.name for vector in [*VECTORS.valid, *VECTORS.malformed]]
    assert len(names) == len(set(names))


def _write(vector: ValidFrame) -> bytes:
    """How pulsewire writes the vector's value, through the public kit and the writers."""
    if vector.kind == "DATA":
        assert vector.data is not None
        return data_frame(bytes.fromhex(vector.data), fin=bool(vector.flags & FLAG_FIN))
    assert vector.fields is not None
    value = STRUCTS[vector.kind](**vector.fields)
    # The heartbeat writers take the struct's fields, by name.
    if isinstance(value, Ping):
        return ping_frame(**msgspec.structs.asdict(value))
    if isinstance(value, Pong):
        return pong_frame(**msgspec.structs.asdict(value))
    return control_frame(value)


@pytest.mark.parametrize("vector", VECTORS.valid, ids=lambda vector: vector.name)
def test_each_valid_frame_decodes_to_its_meaning(vector: ValidFrame) -> None:
    (frame,) = parse_frames(vector.frame, preamble=False)
    assert frame.kind.name == vector.kind
    assert frame.flags == vector.flags
    if vector.kind == "DATA":
        assert frame.payload.hex() == vector.data
    else:
        assert msgspec.structs.asdict(decode_control(frame)) == vector.fields
    # Either the bytes pulsewire writes for the value, or another encoding it accepts.
    assert (_write(vector).hex() == vector.hex) == vector.written_by_pulsewire


def _feed(vector: MalformedInput, pieces: list[bytes]) -> Session:
    receiver = VECTORS.receiver
    session = Session(receiver.policy, receiver.limits, now=0.0, initiator=False)
    context = CONTEXT[vector.after]
    if context:
        session.receive_data(context, 0.0)
        assert session.death is None
    session.data_to_send()
    for piece in pieces:
        session.receive_data(piece, 0.0)
    return session


@pytest.mark.parametrize("vector", VECTORS.malformed, ids=lambda vector: vector.name)
@pytest.mark.parametrize("split", ["whole", "byte by byte"])
def test_a_session_fed_each_malformed_input_closes_with_its_code(
    vector: MalformedInput, split: str
) -> None:
    data = vector.data
    pieces = [data] if split == "whole" else [data[i : i + 1] for i in range(len(data))]
    session = _feed(vector, pieces)
    death = session.death
    assert death is not None
    assert death.reason is Reason.PROTOCOL_ERROR
    assert death.close_code == vector.close_code == CloseCode[vector.close_name]
    expected = HandshakeError if vector.error == "handshake" else ProtocolError
    assert isinstance(death.error, expected)
    if vector.error == "protocol":
        assert not isinstance(death.error, HandshakeError)
    sent = bytes(session.data_to_send())
    frames = parse_frames(sent.removeprefix(PREAMBLE), preamble=False)
    closes = [decode_control(frame) for frame in frames if frame.kind is FrameKind.CLOSE]
    assert len(closes) == 1
    assert isinstance(closes[0], Close)
    assert closes[0].code == vector.close_code
