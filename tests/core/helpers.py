"""Helpers for the core tests: a session facing a raw, hand-played peer."""

from __future__ import annotations

import random

from pulsewire.core import Death, Limits, Policy, Session
from pulsewire.core.codec import Frame
from pulsewire.testing import Control, decode_control, opening_bytes, parse_frames


def connected(
    policy: Policy | None = None,
    limits: Limits | None = None,
    *,
    peer_policy: Policy | None = None,
    peer_limits: Limits | None = None,
    now: float = 0.0,
    seed: int = 0,
    initiator: bool = True,
) -> Session:
    """A session that has received a valid preamble and HELLO; its own output is discarded.

    An initiator takes its first RTT sample at the handshake (0.0 here: the HELLO comes back
    at the same ``now``); a responder (``initiator=False``) has none until a PONG.
    """
    session = Session(policy, limits, now=now, rng=random.Random(seed), initiator=initiator)
    session.data_to_send()
    session.receive_data(opening_bytes(peer_policy, peer_limits), now)
    session.events_received()
    session.data_to_send()  # a responder's HELLO goes after the initiator's
    return session


def sent_frames(session: Session, budget: int | None = None) -> list[Frame]:
    """The frames in ``session.data_to_send(budget)`` (which must not start with a preamble)."""
    return parse_frames(session.data_to_send(budget), preamble=False)


def sent_controls(session: Session) -> list[Control]:
    """The control payloads in ``session.data_to_send()``."""
    return [decode_control(frame) for frame in sent_frames(session)]


def death_of(session: Session) -> Death:
    assert session.death is not None, f"session is {session.state.name}, not DEAD"
    return session.death


def run_timers(session: Session, until: float) -> float:
    """Fire ``session``'s timer at each of its deadlines up to ``until``; return the last time."""
    now = 0.0
    while (deadline := session.next_deadline()) is not None and deadline <= until:
        now = deadline
        session.handle_timer(now)
    return now
