"""The memory layout the heartbeat fast paths rely on (the ``_*HeartbeatFields`` classes).

At 10,000 idle connections a heartbeat's cost is mostly cache misses, one per cache line of
per-connection memory it touches. These tests fail when a fast path starts reading a field
outside the lines kept for it (one of the session, one of the protocol), or when those grow.
"""

from __future__ import annotations

import dis
import gc
from collections.abc import Callable
from typing import Any

import pytest

from pulsewire.asyncio.protocol import PulsewireProtocol, _ProtocolHeartbeatFields
from pulsewire.core.session import Session, _SessionHeartbeatFields

CACHE_LINE = 64


def _attributes_of_self(function: Callable[..., Any]) -> set[str]:
    """Names of the attributes ``function`` reads or writes on its first argument."""
    code = function.__code__
    self_name = code.co_varnames[0]
    names: set[str] = set()
    previous: dis.Instruction | None = None
    for instruction in dis.get_instructions(code):
        on_self = (
            previous is not None and previous.opname == "LOAD_FAST" and previous.argval == self_name
        )
        if on_self and instruction.opname in ("LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR"):
            names.add(instruction.argval)
        previous = instruction
    return names


def _slots(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())}


def _memory_order(cls: type) -> list[str]:
    """The slots of ``cls`` (a class with no slotted base) in the order they lie in memory.

    The garbage collector's traversal of a slotted instance visits its slots by offset, so
    an instance whose every slot holds a distinct marker tells the layout.
    """
    instance = cls.__new__(cls)
    markers = {name: object() for name in _slots(cls)}
    for name, marker in markers.items():
        object.__setattr__(instance, name, marker)
    by_marker = {id(marker): name for name, marker in markers.items()}
    return [by_marker[id(ref)] for ref in gc.get_referents(instance) if id(ref) in by_marker]


def test_cpython_lays_slots_out_sorted_by_name_which_is_why_the_base_class_exists() -> None:
    class Example:
        __slots__ = ("zulu", "alpha", "mike")  # noqa: RUF023 - unsorted on purpose

    assert _memory_order(Example) == ["alpha", "mike", "zulu"]


def test_the_heartbeat_fields_come_first_and_fit_one_cache_line() -> None:
    # A subclass's layout extends its base's: the base's slots lie right after the object
    # header (refcount, type), which every access touches too.
    assert Session.__mro__[1] is _SessionHeartbeatFields
    assert _SessionHeartbeatFields.__basicsize__ <= CACHE_LINE
    assert not set(Session.__slots__) & set(_SessionHeartbeatFields.__slots__)


@pytest.mark.parametrize("method", [Session.receive_heartbeat, Session.heartbeat_due])
def test_the_fast_paths_touch_only_the_heartbeat_fields(method: Callable[..., Any]) -> None:
    touched = _attributes_of_self(method) & _slots(Session)
    assert touched, "the parser found no attribute access: it is broken"
    hot = set(_SessionHeartbeatFields.__slots__)
    assert touched <= hot, touched - hot


def test_the_attribute_parser_sees_reads_and_writes() -> None:
    # Guards the test above from passing vacuously.
    assert {"_record", "_ping_seq", "_rtt", "_steady"} <= _attributes_of_self(
        Session.receive_heartbeat
    ) | _attributes_of_self(Session.heartbeat_due)


def test_the_protocol_object_fits_two_cache_lines() -> None:
    assert PulsewireProtocol.__basicsize__ <= 2 * CACHE_LINE
    assert PulsewireProtocol.__mro__[1] is _ProtocolHeartbeatFields
    assert _ProtocolHeartbeatFields.__basicsize__ <= CACHE_LINE


@pytest.mark.parametrize(
    "method", [PulsewireProtocol.buffer_updated, PulsewireProtocol.on_deadline]
)
def test_the_protocol_fast_paths_touch_only_its_heartbeat_fields(
    method: Callable[..., Any],
) -> None:
    touched = _attributes_of_self(method) & _slots(PulsewireProtocol)
    assert "session" in touched
    assert touched <= set(_ProtocolHeartbeatFields.__slots__), touched
