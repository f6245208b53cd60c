from __future__ import annotations

import pytest

from pulsewire.core import CloseCode, Death, Reason, Source
from pulsewire.errors import (
    ConnectionClosedError,
    HandshakeError,
    PeerDeadError,
    ProtocolError,
    PulsewireError,
)


def death(**changes: object) -> Death:
    fields: dict[str, object] = {
        "reason": Reason.EOF,
        "source": Source.PEER,
        "silence": 0.25,
        "last_rtt": 0.0123,
        "close_code": 1000,
    }
    fields.update(changes)
    return Death(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("reason", [Reason.EOF, Reason.LOCAL_CLOSE])
def test_orderly_close_with_normal_code_is_clean(reason: Reason) -> None:
    assert death(reason=reason).clean


@pytest.mark.parametrize(
    "changes",
    [
        {"close_code": 1001},
        {"close_code": None},
        {"reason": Reason.PROTOCOL_ERROR},
        {"reason": Reason.TIMEOUT},
        {"reason": Reason.LOCAL_CLOSE, "error": TimeoutError("no CLOSE from the peer")},
    ],
)
def test_anything_else_is_not_clean(changes: dict[str, object]) -> None:
    assert not death(**changes).clean


def test_describe_names_reason_source_silence_rtt_code_and_error() -> None:
    text = death(
        reason=Reason.PROTOCOL_ERROR,
        source=Source.LOCAL,
        close_code=CloseCode.TOO_LARGE,
        close_reason="too big",
        error=ProtocolError("frame too big"),
    ).describe()
    assert text == (
        "protocol_error (local) after 0.250 s of silence, last RTT 12.3 ms, "
        "close code 1006 'too big': frame too big"
    )


def test_describe_without_rtt_or_code() -> None:
    assert death(last_rtt=None, close_code=None).describe() == (
        "eof (peer) after 0.250 s of silence, last RTT n/a"
    )


def test_closed_error_carries_the_death_and_its_reason() -> None:
    record = death(reason=Reason.RESET, source=Source.KERNEL)
    error = PeerDeadError(record)
    assert isinstance(error, ConnectionClosedError)
    assert isinstance(error, PulsewireError)
    assert (error.death, error.reason, str(error)) == (record, Reason.RESET, record.describe())


def test_protocol_error_defaults_to_the_protocol_error_code() -> None:
    assert ProtocolError("bad").code == CloseCode.PROTOCOL_ERROR
    error = HandshakeError("old", CloseCode.UNSUPPORTED_VERSION)
    assert error.code is CloseCode.UNSUPPORTED_VERSION
