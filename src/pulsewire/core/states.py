"""Connection states, death reasons, and every legal transition in one table.

The session never assigns a state directly: it asks :func:`next_state` for the target of
a trigger, so an impossible transition is a bug that fails loudly in tests instead of a
silent corruption. ``docs/`` draws its state diagram from :data:`TRANSITIONS`.
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "Reason", "State", "Trigger", "mermaid_diagram", "next_state"]


class State(enum.Enum):
    """Where a connection stands, as seen from this side."""

    HANDSHAKE = "handshake"  #: preamble and HELLO not yet exchanged
    ALIVE = "alive"  #: evidence of life arrived recently
    SUSPECT = "suspect"  #: silent for longer than ``suspect_after``; pings continue
    CLOSING = "closing"  #: we sent CLOSE and wait for the peer's CLOSE
    DEAD = "dead"  #: terminal; the ``Death`` record says why


class Reason(enum.Enum):
    """Why a connection died. Every death carries exactly one."""

    TIMEOUT = "timeout"  #: no evidence for ``timeout``: crashed host, cable cut, hung peer
    RESET = "reset"  #: the peer's kernel answered with RST: crashed and restarted, or aborted
    EOF = "eof"  #: the peer closed: CLOSE frame or end of stream (process exited)
    UNREACHABLE = "unreachable"  #: ICMP host or network unreachable
    PROTOCOL_ERROR = "protocol_error"  #: the peer broke the protocol (or failed the handshake)
    LOCAL_CLOSE = "local_close"  #: this side closed the connection


class Trigger(enum.Enum):
    """What can move a connection from one state to another."""

    HANDSHAKE_DONE = "handshake_done"
    SILENCE = "silence"  #: silent for longer than ``suspect_after``
    EVIDENCE = "evidence"  #: a frame (or, in strict mode, a PONG) arrived
    LOCAL_CLOSE = "local_close"  #: the local user called ``close()``
    DIE = "die"  #: timeout, reset, EOF, unreachable, protocol error, close completed


_LIVE = (State.HANDSHAKE, State.ALIVE, State.SUSPECT, State.CLOSING)

#: (state, trigger) -> next state. Absent pairs are illegal.
TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.HANDSHAKE, Trigger.HANDSHAKE_DONE): State.ALIVE,
    (State.ALIVE, Trigger.SILENCE): State.SUSPECT,
    (State.SUSPECT, Trigger.EVIDENCE): State.ALIVE,
    (State.HANDSHAKE, Trigger.LOCAL_CLOSE): State.CLOSING,
    (State.ALIVE, Trigger.LOCAL_CLOSE): State.CLOSING,
    (State.SUSPECT, Trigger.LOCAL_CLOSE): State.CLOSING,
    **{(state, Trigger.DIE): State.DEAD for state in _LIVE},
}


def next_state(state: State, trigger: Trigger) -> State:
    """Return the state that ``trigger`` leads to from ``state``; raise on an illegal move."""
    try:
        return TRANSITIONS[state, trigger]
    except KeyError:
        raise AssertionError(f"illegal transition: {state.name} on {trigger.name}") from None


def mermaid_diagram() -> str:
    """The state diagram in Mermaid syntax, drawn from :data:`TRANSITIONS` (used by docs/)."""
    lines = ["stateDiagram-v2", f"    [*] --> {State.HANDSHAKE.name}"]
    for (source, trigger), target in TRANSITIONS.items():
        lines.append(f"    {source.name} --> {target.name}: {trigger.value}")
    lines.append(f"    {State.DEAD.name} --> [*]")
    return "\n".join(lines)
