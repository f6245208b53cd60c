"""What one server holds for all its peers together: connections, and inbound bytes.

Each connection is bounded by its :class:`~pulsewire.core.policy.Limits`; a server with
thousands of them needs a bound on their sum too. :class:`ServerLoad` keeps the count and
the sum, and decides; the driver acts (it refuses, it closes). Like the rest of the core it
does no I/O, so every driver applies the same rules:

- :meth:`ServerLoad.admit` when a connection arrives: False at ``max_connections``;
- :meth:`ServerLoad.hold` whenever the bytes a connection holds change (its session's
  ``inbound_held`` and ``inbound_incomplete``; 0 once it is dead): it returns the
  connections to shed to get back within ``inbound_budget``, the largest incomplete frame
  or message first (what a slow or hostile sender makes us hold), then the largest backlog
  of unconsumed messages;
- :meth:`ServerLoad.release` when an admitted connection is gone.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar, final

from pulsewire.core.policy import ServerLimits

__all__ = ["ServerLoad"]

K = TypeVar("K", bound=Hashable)


@final
class ServerLoad(Generic[K]):
    """Admission and the inbound budget of one server (see the module docstring)."""

    __slots__ = (
        "_holding",
        "budget",
        "connections",
        "held",
        "max_connections",
        "peak_held",
        "refused",
        "shed",
    )

    def __init__(self, limits: ServerLimits, *, max_connections: int | None) -> None:
        """``max_connections``: the limit in force (the driver resolves ``None`` in
        ``limits`` from the process's file limit; ``None`` here: no limit)."""
        self.max_connections = max_connections
        self.budget = limits.inbound_budget
        self.connections = 0  #: admitted and not released
        self.held = 0  #: bytes held across every connection
        self.peak_held = 0  #: the most ``held`` has been
        self.refused = 0  #: connections refused at ``max_connections``
        self.shed = 0  #: connections shed to keep within the budget
        # key -> (held, incomplete), only for connections that hold something.
        self._holding: dict[K, tuple[int, int]] = {}

    def admit(self) -> bool:
        """A connection arrives: True to take it (count it), False to refuse it."""
        limit = self.max_connections
        if limit is not None and self.connections >= limit:
            self.refused += 1
            return False
        self.connections += 1
        return True

    def release(self) -> None:
        """An admitted connection is gone (what it held is reported as 0 by :meth:`hold`)."""
        self.connections -= 1

    def hold(self, key: K, held: int, incomplete: int) -> list[K]:
        """Connection ``key`` now holds ``held`` bytes, ``incomplete`` of them in a frame or
        message not yet whole. Returns the connections to close to keep within the budget
        (forgotten already: their bytes no longer count); usually none."""
        before = self._holding.pop(key, None)
        if before is not None:
            self.held -= before[0]
        if held:
            self._holding[key] = (held, incomplete)
            self.held += held
            if self.held > self.peak_held:
                self.peak_held = self.held
        budget = self.budget
        if budget is None or self.held <= budget:
            return []
        victims: list[K] = []
        holding = self._holding
        while self.held > budget and holding:
            # Incomplete bytes first: a sender that dribbles is the one to go.
            victim = max(holding, key=lambda k: (holding[k][1], holding[k][0]))
            victims.append(victim)
            self._forget(victim)
        self.shed += len(victims)
        return victims

    def _forget(self, key: K) -> None:
        entry = self._holding.pop(key, None)
        if entry is not None:
            self.held -= entry[0]
