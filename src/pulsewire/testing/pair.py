"""A client and a server :class:`~pulsewire.core.Session` joined in memory on a fake clock."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from typing import Literal, final

from pulsewire.core.events import Died, Event, MessageReceived
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.session import Session
from pulsewire.core.states import Reason
from pulsewire.testing.wire import Wire

__all__ = ["SessionPair", "Side"]

Side = Literal["client", "server"]
"""Either end of a :class:`SessionPair`."""
_SIDES: tuple[Side, Side] = ("client", "server")


@final
class SessionPair:
    """Two sessions talking through two :class:`Wire`\\ s on a shared float clock.

    Nothing happens on its own: :meth:`exchange` moves bytes until both sides are quiet,
    :meth:`advance` and :meth:`step_to_deadline` move the clock and fire the sessions'
    timers, :meth:`jump` moves the clock without firing anything (an event loop that was
    blocked). The sessions are plain attributes, so a test can also call them directly
    with ``pair.now``; the next exchange carries the consequences.

    Faults: set ``to_server.mode`` or ``to_client.mode`` to :attr:`WireMode.HOLD` or
    :attr:`WireMode.DROP` (a stalled path, a blackhole), or :meth:`freeze` a side (a hung
    process: it neither reads, writes, nor runs its timer).

    The pair plays the drivers too: when a session dies, its transport is closed after its
    last bytes, so the other side receives an end of stream (or a reset after an abort).
    """

    def __init__(
        self,
        client_policy: Policy | None = None,
        server_policy: Policy | None = None,
        *,
        client_limits: Limits | None = None,
        server_limits: Limits | None = None,
        seed: int = 0,
        now: float = 0.0,
        connect: bool = True,
    ) -> None:
        """Create both sessions at ``now``; exchange their HELLOs unless ``connect`` is false.

        ``seed`` seeds each session's random generator (ping jitter), so runs repeat exactly.
        """
        #: The shared clock, in seconds: tests read it, and move it with the methods below.
        self.now = now
        #: The initiator's session.
        self.client = Session(
            client_policy, client_limits, now=now, name="client", rng=random.Random(seed)
        )
        #: The responder's session.
        self.server = Session(
            server_policy,
            server_limits,
            now=now,
            name="server",
            rng=random.Random(seed + 1),
            initiator=False,
        )
        self.to_server = Wire()  #: bytes from client to server
        self.to_client = Wire()  #: bytes from server to client
        self.client_events: list[Event] = []  #: every event the client produced, oldest first
        self.server_events: list[Event] = []  #: every event the server produced, oldest first
        self._frozen: set[Side] = set()
        self._aborted: dict[Side, bool] = {}
        if connect:
            self.exchange()

    # ------------------------------------------------------------------ access by side

    def session(self, side: Side) -> Session:
        """The session of ``side``."""
        return self.client if side == "client" else self.server

    def events(self, side: Side) -> list[Event]:
        """Every event ``side`` produced so far (the same list as ``client_events`` etc.)."""
        return self.client_events if side == "client" else self.server_events

    def messages(self, side: Side) -> list[bytes]:
        """The messages ``side`` has received, in order."""
        return [e.data for e in self.events(side) if isinstance(e, MessageReceived)]

    def freeze(self, side: Side) -> None:
        """Hang ``side``: it stops reading, writing and running timers; bytes to it wait."""
        self._frozen.add(side)

    def thaw(self, side: Side) -> None:
        """Resume ``side``. Nothing runs yet: call :meth:`exchange` or :meth:`fire_timers`."""
        self._frozen.discard(side)

    # ------------------------------------------------------------------ bytes

    def exchange(self, split: Sequence[int] = ()) -> int:
        """Move bytes both ways until neither side has anything to send or receive.

        With ``split``, every delivery is cut into pieces of these sizes, taken in turn and
        cycled, so frames arrive torn at arbitrary boundaries. Returns the bytes delivered.
        """
        if any(size <= 0 for size in split):
            raise ValueError(f"split sizes must be positive, got {list(split)!r}")
        total = 0
        while True:
            for side in _SIDES:
                self._flush(side)
            moved = 0
            progressed = False
            for side in _SIDES:
                delivered, ended = self._deliver(side, split)
                moved += delivered
                progressed = progressed or ended or delivered > 0
            total += moved
            if not progressed:
                return total

    def _outgoing(self, side: Side) -> Wire:
        return self.to_server if side == "client" else self.to_client

    def _flush(self, side: Side) -> None:
        if side in self._frozen:
            return
        session = self.session(side)
        wire = self._outgoing(side)
        wire.write(session.data_to_send(now=self.now))
        self._collect(side)
        if session.death is not None:
            wire.close(Reason.RESET if self._aborted.get(side, True) else Reason.EOF)

    def _deliver(self, side: Side, split: Sequence[int]) -> tuple[int, bool]:
        if side in self._frozen:
            return 0, False
        session = self.session(side)
        data, end = self._outgoing("server" if side == "client" else "client").take()
        for piece in _pieces(data, split):
            session.receive_data(piece, self.now)
        if end is Reason.EOF:
            session.receive_eof(self.now)
        elif end is not None:
            session.connection_lost(end, self.now)
        self._collect(side)
        return len(data), end is not None

    def _collect(self, side: Side) -> None:
        new = self.session(side).events_received()
        for event in new:
            if isinstance(event, Died):
                self._aborted[side] = event.abort
        self.events(side).extend(new)

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """The earliest deadline of the sessions that are not frozen, or ``None``."""
        deadlines = [
            deadline
            for side in _SIDES
            if side not in self._frozen
            and (deadline := self.session(side).next_deadline()) is not None
        ]
        return min(deadlines, default=None)

    def fire_timers(self) -> None:
        """Call ``handle_timer(now)`` on every unfrozen side whose deadline has come, then
        exchange. Raises ``AssertionError`` if a session's deadline does not move past
        ``now`` after its timer fired (a driver would spin on it)."""
        for side in _SIDES:
            session = self.session(side)
            deadline = session.next_deadline()
            if side in self._frozen or deadline is None or deadline > self.now:
                continue
            session.handle_timer(self.now)
            after = session.next_deadline()
            if after is not None and after <= self.now:
                raise AssertionError(
                    f"{side} deadline stuck at {after} after its timer fired at {self.now}"
                )
            self._collect(side)
        self.exchange()

    def step_to_deadline(self) -> float | None:
        """Jump the clock to the earliest deadline, fire it, exchange; return the new ``now``.

        Returns ``None``, leaving the clock alone, when no unfrozen session has a deadline.
        """
        deadline = self.next_deadline()
        if deadline is None:
            return None
        self.now = max(self.now, deadline)
        self.fire_timers()
        return self.now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, firing every deadline on the way in order."""
        if seconds < 0:
            raise ValueError(f"cannot go back in time ({seconds} s)")
        target = self.now + seconds
        while (deadline := self.next_deadline()) is not None and deadline <= target:
            self.step_to_deadline()
        self.now = target

    def jump(self, seconds: float) -> None:
        """Move the clock by ``seconds`` without firing anything: an event loop that stalled."""
        if seconds < 0:
            raise ValueError(f"cannot go back in time ({seconds} s)")
        self.now += seconds


def _pieces(data: bytes, split: Sequence[int]) -> Iterator[bytes]:
    if not split:
        if data:
            yield data
        return
    pos = 0
    for size in itertools.cycle(split):
        if pos >= len(data):
            return
        yield data[pos : pos + size]
        pos += size
