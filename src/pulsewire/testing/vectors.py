"""Test vectors of the wire protocol, for implementations in any language.

``vectors.json`` (shipped beside this module) holds valid frames of every kind with their
decoded meaning, and malformed inputs with what a receiver must do about them: the CLOSE
code it sends, and whether the connection failed in its handshake or after it.
``docs/protocol.md`` ("Test vectors") explains how to use them. The file is written by
``scripts/make_test_vectors.py`` from pulsewire's own encoder and session, and a test
regenerates it, so it cannot drift from the code.

:func:`load_vectors` reads it into typed values for Python tests.
"""

from __future__ import annotations

import importlib.resources
from typing import Any, Literal

import msgspec

from pulsewire.core.policy import Limits, Policy

__all__ = ["VECTORS_FILE", "MalformedInput", "Receiver", "ValidFrame", "Vectors", "load_vectors"]

#: The name of the JSON file in the ``pulsewire.testing`` package.
VECTORS_FILE = "vectors.json"

#: What a receiver got before a malformed input: ``nothing`` (the input starts the stream),
#: ``preamble`` (the peer's preamble, not yet its HELLO) or ``hello`` (the peer's preamble and
#: a valid HELLO, :attr:`Vectors.peer_opening`: the connection is open).
After = Literal["nothing", "preamble", "hello"]


class ValidFrame(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One well-formed frame and what it means."""

    name: str  #: short, unique
    description: str  #: what the frame is, in words
    hex: str  #: the whole frame (header and payload), lowercase hexadecimal
    kind: str  #: the frame kind's name: ``HELLO``, ``DATA``, ``PING``, ...
    flags: int  #: the header's flags byte
    #: A control frame's payload decoded, by field name (``null`` for DATA).
    fields: dict[str, Any] | None
    data: str | None  #: a DATA frame's payload in hexadecimal (``null`` for control frames)
    #: True when pulsewire writes exactly these bytes for this frame; false for another
    #: encoding a receiver must accept (a shorter integer, a field left out or added).
    written_by_pulsewire: bool

    @property
    def frame(self) -> bytes:
        """The frame's bytes."""
        return bytes.fromhex(self.hex)


class MalformedInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Bytes from a peer that break the protocol, and what the receiver does."""

    name: str  #: short, unique
    description: str  #: what is wrong with the bytes, in words
    after: After  #: what the receiver got before these bytes (see :data:`After`)
    hex: str  #: the bytes, lowercase hexadecimal, delivered in one piece
    close_code: int  #: the code of the CLOSE frame the receiver sends before it closes
    close_name: str  #: that code's name (``PROTOCOL_ERROR``, ``TOO_LARGE``, ...)
    #: ``handshake`` when the connection never opened (pulsewire raises ``HandshakeError``),
    #: ``protocol`` when it broke afterwards (``ProtocolError``).
    error: Literal["handshake", "protocol"]

    @property
    def data(self) -> bytes:
        """The malformed bytes."""
        return bytes.fromhex(self.hex)


class Receiver(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The receiving side the malformed inputs are fed to: a responder (a server) with
    this policy and these limits, its clock at 0 for every input."""

    role: Literal["responder"]  #: the receiver is a server: it sends HELLO after the peer's
    policy: Policy  #: the receiver's policy
    limits: Limits  #: the receiver's limits


class Vectors(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole file."""

    format: int  #: this file's layout version (1), raised if its shape ever changes
    protocol_version: int  #: the wire protocol version the vectors are for
    about: str  #: how to use them, in a few sentences
    preamble: str  #: the 5-byte preamble, hexadecimal
    #: What a peer sends first: preamble and HELLO, hexadecimal (the ``hello`` context).
    peer_opening: str
    receiver: Receiver  #: the side the malformed inputs are fed to
    valid: list[ValidFrame]  #: frames a receiver must decode
    malformed: list[MalformedInput]  #: inputs a receiver must refuse, and how


def load_vectors() -> Vectors:
    """The protocol's test vectors, from the JSON file shipped in this package."""
    text = importlib.resources.files("pulsewire.testing").joinpath(VECTORS_FILE).read_bytes()
    return msgspec.json.decode(text, type=Vectors)
