"""What every driver's ``Connection`` is, apart from waiting: the session seen from the
user's side, and the rules of closing and of ending an iteration, written once.

A driver's ``Connection`` subclasses :class:`ConnectionBase`, keeps its driver side (the
asyncio protocol, the anyio stream driver) in ``_io``, and adds what needs its I/O library:
waiting for messages, for a state, for the death.
"""

from __future__ import annotations

from typing import Protocol

from pulsewire import logevents
from pulsewire._log import EventLogger
from pulsewire.core.events import Death
from pulsewire.core.frames import CloseCode
from pulsewire.core.policy import Limits, Policy
from pulsewire.core.session import Negotiated, Session
from pulsewire.core.states import Reason, State
from pulsewire.core.stats import SessionStats
from pulsewire.errors import LocalClosedError, PeerDeadError, UsageError
from pulsewire.kernel import KeepaliveReport

__all__ = ["ConnectionBase", "DriverSide", "ends_iteration"]


class DriverSide(Protocol):
    """What a connection reads of its driver (both drivers' have it)."""

    @property
    def policy(self) -> Policy: ...

    @property
    def limits(self) -> Limits: ...

    @property
    def name(self) -> str: ...

    @property
    def peer_address(self) -> str: ...

    @property
    def kernel_report(self) -> KeepaliveReport | None: ...

    @property
    def session(self) -> Session | None: ...

    @property
    def log(self) -> EventLogger: ...

    def time(self) -> float: ...

    def after_input(self, now: float | None = None) -> None: ...


def ends_iteration(death: Death) -> bool:
    """``async for message in connection`` ends quietly after an orderly close (a CLOSE
    with NORMAL from the peer, or this side's ``close()``); any other death is raised."""
    return death.clean or death.reason is Reason.LOCAL_CLOSE


class ConnectionBase:
    """The queries and rules both drivers' ``Connection`` share."""

    __slots__ = ()

    _io: DriverSide

    def __repr__(self) -> str:
        return f"<Connection {self.peer_address} {self.state.value}>"

    @property
    def policy(self) -> Policy:
        """How this side watches the peer (the ``policy`` given to connect or serve)."""
        return self._io.policy

    @property
    def limits(self) -> Limits:
        """What this side accepts from the peer (the ``limits`` given to connect or serve)."""
        return self._io.limits

    @property
    def name(self) -> str:
        """This side's name, sent to the peer in HELLO."""
        return self._io.name

    @property
    def peer_address(self) -> str:
        """The peer's address: ``host:port``, a Unix socket's path, or ``?`` (before the
        transport connects, or a stream with no address)."""
        return self._io.peer_address

    @property
    def kernel_report(self) -> KeepaliveReport | None:
        """What the kernel applied of the socket options (None: nothing asked, or not TCP)."""
        return self._io.kernel_report

    @property
    def state(self) -> State:
        """HANDSHAKE, ALIVE, SUSPECT, CLOSING or DEAD."""
        session = self._io.session
        return State.HANDSHAKE if session is None else session.state

    @property
    def death(self) -> Death | None:
        """Why the connection died, once it has."""
        session = self._io.session
        return None if session is None else session.death

    @property
    def rtt(self) -> float | None:
        """Smoothed round-trip time in seconds (RFC 6298), ``None`` before the first sample.
        ``ping()`` measures one on demand."""
        session = self._io.session
        return None if session is None else session.rtt.srtt

    @property
    def negotiated(self) -> Negotiated | None:
        """The intervals settled by the handshake, and the peer's HELLO."""
        session = self._io.session
        return None if session is None else session.negotiated

    @property
    def peer_name(self) -> str:
        """The name the peer sent in its HELLO (``""`` before the handshake, or if none)."""
        negotiated = self.negotiated
        return "" if negotiated is None else negotiated.peer.name

    def stats(self) -> SessionStats:
        """A frozen snapshot of this connection's counters and RTT figures."""
        return self._session.stats(self._io.time())

    # ------------------------------------------------------------------ for the drivers

    @property
    def _session(self) -> Session:
        session = self._io.session
        if session is None:
            raise UsageError("the connection is not running yet")
        return session

    def _raise_if_dead(self) -> None:
        death = self.death
        if death is not None:
            raise (LocalClosedError if death.reason is Reason.LOCAL_CLOSE else PeerDeadError)(death)

    def _ping_wait(self) -> float:
        """Seconds before ``ping()`` may send: pings closer than the peer allows count as
        abuse there (0 before the handshake: ``send_ping`` then says why it cannot).
        Raises the death if the connection is dead."""
        self._raise_if_dead()
        session = self._session
        if session.negotiated is None:
            return 0.0
        return session.ping_allowed_at() - self._io.time()

    def _begin_close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start an orderly close, unless one is under way or the connection is dead."""
        session = self._session
        if session.death is None and session.state is not State.CLOSING:
            io = self._io
            io.log.info(
                logevents.CONNECTION_CLOSE, peer=self.peer_address, code=int(code), why=reason
            )
            session.close(io.time(), code, reason)
            io.after_input()

    def _closed(self, death: Death) -> Death:
        """What ``close()`` returns: the death, unless messages were not delivered, in
        which case it raises with it: a close never returns quietly with messages lost."""
        if death.undelivered:
            self._raise_if_dead()
        return death
