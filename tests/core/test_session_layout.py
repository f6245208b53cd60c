"""The memory layout the heartbeat fast paths rely on (the ``_*HeartbeatFields`` classes).

At 10,000 idle connections a heartbeat's cost is mostly cache misses, one per cache line of
per-connection memory it touches. These tests fail when a fast path starts reading a field
outside the lines kept for it (one of the session, one of the protocol), or when those grow.
"""

from __future__ import annotations

import dis
import gc
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from pulsewire.asyncio.protocol import PulsewireProtocol, _ProtocolHeartbeatFields
from pulsewire.core.heartbeat import HEARTBEAT_FIELDS, HeartbeatFields, PythonHeartbeatFields
from pulsewire.core.session import Session

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
    # A subclass's layout extends its base's: the base's fields lie right after the object
    # header (refcount, type), which every access touches too.
    assert Session.__mro__[1] is HeartbeatFields
    for implementation in (HeartbeatFields, PythonHeartbeatFields):
        assert implementation.__basicsize__ <= CACHE_LINE
    assert PythonHeartbeatFields.__slots__ == HEARTBEAT_FIELDS
    assert not set(Session.__slots__) & set(HEARTBEAT_FIELDS)


def test_both_implementations_have_the_same_fields_and_fast_paths() -> None:
    def members(cls: type) -> set[str]:
        return {name for name, value in vars(cls).items() if inspect.ismemberdescriptor(value)}

    assert members(HeartbeatFields) == set(HEARTBEAT_FIELDS)
    for method in ("receive_heartbeat", "heartbeat_due"):
        assert callable(getattr(HeartbeatFields, method))


def _all_slots_of_a_session() -> set[str]:
    return _slots(Session) | set(HEARTBEAT_FIELDS)


@pytest.mark.parametrize(
    "method", [PythonHeartbeatFields.receive_heartbeat, PythonHeartbeatFields.heartbeat_due]
)
def test_the_fast_paths_touch_only_the_heartbeat_fields(method: Callable[..., Any]) -> None:
    # Read off the reference implementation; the compiled one is its translation, and
    # tests/core/test_heartbeat_compiled.py compares every field the two leave behind.
    touched = _attributes_of_self(method) & _all_slots_of_a_session()
    assert touched, "the parser found no attribute access: it is broken"
    assert touched <= set(HEARTBEAT_FIELDS), touched - set(HEARTBEAT_FIELDS)


def test_the_attribute_parser_sees_reads_and_writes() -> None:
    # Guards the test above from passing vacuously.
    assert set(HEARTBEAT_FIELDS) <= _attributes_of_self(
        PythonHeartbeatFields.receive_heartbeat
    ) | _attributes_of_self(PythonHeartbeatFields.heartbeat_due)


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
