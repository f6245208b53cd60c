"""The compiled fast paths (``pulsewire.core._heartbeat``) against the Python reference.

Two sessions built alike, one on each implementation, get the same inputs: timer fires and
21-byte frames, well-formed or not (latest and stale PINGs and PONGs, odd times, a wrong
tag, garbage). After every input both must have returned the same thing and hold the same
record (to the bit), sequence number, RTT figures, deadline, state and counters.
"""

from __future__ import annotations

import copy
import gc
import math
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulsewire.core import Evidence, Policy, Session
from pulsewire.core.frames import (
    FLOAT64_TAG,
    HEARTBEAT_FRAME_SIZE,
    PING_HEAD,
    PONG_HEAD,
    pack_heartbeat,
    unpack_heartbeat,
)
from pulsewire.core.heartbeat import COMPILED, HEARTBEAT_FIELDS, HeartbeatFields
from pulsewire.core.record import LAST_PING

from .helpers import NOT_COMPILED, PythonSession, connected

pytestmark = pytest.mark.skipif(not COMPILED, reason=NOT_COMPILED)

POLICIES = [
    Policy(),
    Policy(interval=0.5, timeout=2.0, evidence=Evidence.PONG),
    Policy(interval=2.0, timeout=5.0, suspect_after=3.0, jitter=0.5),
]

times = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=100.0),
)
latest_pong = st.tuples(st.just("pong-latest"))
plain_ping = st.tuples(st.just("ping"), st.integers(1, 1000), st.floats(0.0, 100.0))
#: One input: ("timer", step) or ("frame", step, frame spec); mostly what a live peer sends.
inputs = st.one_of(
    st.tuples(st.just("timer"), st.floats(min_value=0.0, max_value=1.5)),
    st.tuples(st.just("frame"), st.floats(min_value=0.0, max_value=1.0), latest_pong),
    st.tuples(st.just("frame"), st.floats(min_value=0.0, max_value=1.0), plain_ping),
    st.tuples(
        st.just("frame"),
        st.floats(min_value=0.0, max_value=1.5),
        st.one_of(
            latest_pong,
            st.tuples(st.sampled_from(["ping", "pong"]), st.integers(0, 2**32 - 1), times),
            st.tuples(st.just("tag"), st.integers(0, 255)),
            st.tuples(st.just("bytes"), st.binary(min_size=0, max_size=30)),
        ),
    ),
)


def _frame(spec: tuple[object, ...], latest: tuple[int, float]) -> bytes:
    kind = spec[0]
    if kind == "pong-latest":
        return pack_heartbeat(PONG_HEAD, latest[0] & 0xFFFFFFFF, FLOAT64_TAG, latest[1])
    if kind in ("ping", "pong"):
        head = PING_HEAD if kind == "ping" else PONG_HEAD
        seq, sent_at = spec[1], spec[2]
        assert isinstance(seq, int)
        assert isinstance(sent_at, float)
        return pack_heartbeat(head, seq, FLOAT64_TAG, sent_at)
    if kind == "tag":
        tag = spec[1]
        assert isinstance(tag, int)
        return pack_heartbeat(PING_HEAD, 1, tag, 0.0)
    data = spec[1]
    assert isinstance(data, bytes)
    return data


def _observe(session: Session, now: float) -> tuple[object, ...]:
    """What a driver sees after one input, read without folding a staged RTT sample."""
    return (
        session._record.tobytes(),
        session._ping_seq,
        session._steady is not None,
        session._rtt.count,
        session.next_deadline(),
        session.state,
        repr(session.death),  # a death holds an exception: equal only to itself
        bytes(session.data_to_send(None, now)),
        repr(session.events_received()),
    )


def _summary(session: Session, now: float) -> tuple[object, ...]:
    """The figures at the end: RTT (staged samples folded in) and counters."""
    rtt = session.rtt
    return (rtt.count, rtt.last, rtt.srtt, rtt.rttvar, rtt.minimum, session.stats(now))


def _same(left: object, right: object) -> bool:
    """Equal, with NaN equal to NaN (an echoed time may be one)."""
    if isinstance(left, float) and isinstance(right, float):
        return left == right or (math.isnan(left) and math.isnan(right))
    if isinstance(left, tuple) and isinstance(right, tuple):
        return len(left) == len(right) and all(map(_same, left, right))
    return left == right


def _apply(session: Session, step: tuple[object, ...], now: float, latest: tuple[int, float]):
    if step[0] == "timer":
        result: object = session.heartbeat_due(now)
        if result is None:
            session.handle_timer(now)
        return result
    spec = step[2]
    assert isinstance(spec, tuple)
    frame = _frame(spec, latest)
    result = session.receive_heartbeat(frame, now)
    if result is None:
        session.receive_data(frame, now)
    return result


@settings(max_examples=500, deadline=None)
@given(
    policy_index=st.integers(0, len(POLICIES) - 1),
    seed=st.integers(0, 1000),
    steps=st.lists(inputs, min_size=1, max_size=40),
)
def test_compiled_and_python_fast_paths_leave_the_same_session(
    policy_index: int, seed: int, steps: list[tuple[object, ...]]
) -> None:
    policy = POLICIES[policy_index]
    python = connected(policy, seed=seed, cls=PythonSession)
    compiled = connected(policy, seed=seed, cls=Session)
    assert type(compiled).receive_heartbeat is not type(python).receive_heartbeat
    now = 0.0
    for session in (python, compiled):
        session.data_to_send(None, now)
    for step in steps:
        delta = step[1]
        assert isinstance(delta, float)
        now += delta
        latest = (python._ping_seq, python._record[LAST_PING])
        got_python = _apply(python, step, now, latest)
        got_compiled = _apply(compiled, step, now, latest)
        assert _same(got_python, got_compiled), (step, got_python, got_compiled)
        assert _same(_observe(python, now), _observe(compiled, now)), step
    assert _same(_summary(python, now), _summary(compiled, now))


def test_the_comparison_reaches_both_fast_paths() -> None:
    # Guard against a vacuous comparison: a steady exchange is taken by the compiled code.
    session = connected(cls=Session)
    session.data_to_send()
    due = session.heartbeat_due(1.0)
    assert due is not None
    ping, _ = due
    assert len(ping) == HEARTBEAT_FRAME_SIZE
    _, seq, _, sent_at = unpack_heartbeat(ping)
    assert session.receive_heartbeat(pack_heartbeat(PONG_HEAD, seq, FLOAT64_TAG, sent_at), 1.1) == (
        b"",
        None,
    )
    reply = session.receive_heartbeat(pack_heartbeat(PING_HEAD, 9, FLOAT64_TAG, 1.5), 1.6)
    assert reply is not None
    assert reply[0] == pack_heartbeat(PONG_HEAD, 9, FLOAT64_TAG, 1.5)


def test_a_sequence_beyond_the_fixed_layout_is_left_to_the_general_path() -> None:
    for cls in (PythonSession, Session):
        session = connected(cls=cls)
        session.data_to_send()
        session._ping_seq = 2**32 - 1
        assert session.heartbeat_due(1.0) is None
        session.handle_timer(1.0)
        assert session._ping_seq == 2**32
        assert session.data_to_send()  # the PING, in the general encoding


def test_the_compiled_fields_are_collected_with_their_session() -> None:
    # The C type takes part in garbage collection: a cycle through its fields is freed.
    session = connected(cls=Session)

    class Holder:
        pass

    holder = Holder()
    holder.session = session  # type: ignore[attr-defined]
    session._rtt = holder  # type: ignore[assignment]  # a cycle through a C field
    ref = weakref.ref(holder)
    del session, holder
    gc.collect()
    assert ref() is None


def test_a_compiled_session_copies_like_a_python_one() -> None:
    # copy.deepcopy (the detection-quality model forks whole connections) must carry the
    # compiled fields over: the C type lists them in __slots__ as a Python class would.
    assert HeartbeatFields.__slots__ == HEARTBEAT_FIELDS
    session = connected(cls=Session)
    session.data_to_send()
    assert session.heartbeat_due(1.0) is not None
    twin = copy.deepcopy(session)
    assert twin._ping_seq == session._ping_seq == 1
    assert twin._record.tobytes() == session._record.tobytes()
    assert twin._record is not session._record
    assert twin._steady == session._steady
    assert twin.next_deadline() == session.next_deadline()
    assert twin.heartbeat_due(2.0) == session.heartbeat_due(2.0)
