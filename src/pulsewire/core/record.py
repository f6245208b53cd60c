"""A connection's heartbeat numbers, side by side in one ``array('d')``.

Why: at 10,000 idle connections, what a heartbeat costs is mostly cache misses. Between two
heartbeats of one connection, the ten thousand others pass through the caches, so every
distinct piece of memory a heartbeat touches is a miss of its own: a hundred nanoseconds
or more, far more than the arithmetic. A float or int attribute is an object of its own,
somewhere on the heap; reading it is a miss, and replacing it frees the old object, which
touches it again. Kept as attributes, the dozen numbers an idle heartbeat reads and writes
cost about a dozen misses per heartbeat per side, several times the cost of the rest of
pulsewire's work (measured: ``benchmarks/RESULTS.md``, ``## bench_idle``).

So the numbers live here, stored in place: one array per connection, a couple of cache
lines, that the :class:`~pulsewire.core.liveness.LivenessTracker` (times) and the
:class:`~pulsewire.core.session.Session` (abuse limit and counters) share. The session
creates it and hands it to the tracker at the handshake. Each index below has one owner,
named in its comment; only the owner writes it, except where the session's heartbeat fast
paths inline the tracker's steady-state methods (``tests/core/test_heartbeat_fast_path.py``
proves they agree). Counters are floats: exact up to 2**53.

The fast paths read the constants (interval, delay span, timeouts) not from here but from
the session's steady-state tuple, one per configuration and shared by every connection
that has it: it stays in cache, so a heartbeat touches only the first eight slots. The
PONG fast path parks every other RTT sample in ``RTT_STAGED``: the estimator, an object of
its own, is touched on every second PONG only.
"""

from __future__ import annotations

import math
from array import array
from typing import Final

__all__ = ["NO_SAMPLE", "NO_TIME", "SIZE", "new_record"]

# Read or written by every idle heartbeat, so first: eight doubles, one cache line's worth.
LAST_EVIDENCE: Final = 0  #: tracker: the latest evidence of life
LAST_SENT: Final = 1  #: tracker: when we last wrote anything
LAST_PING: Final = 2  #: tracker: when we last sent a PING
PING_DELAY: Final = 3  #: tracker: the delay drawn for the next PING
FIRST_PING: Final = 4  #: tracker: the first PING into the current silence (NO_TIME: none)
PINGS_FULL_AT: Final = 5  #: session: when the peer's ping bucket is full again
PINGS_RECEIVED: Final = 6  #: session: counter
RTT_STAGED: Final = 7  #: session: an RTT sample not yet given to the estimator (NO_SAMPLE: none)
# Constants of the connection (the tracker's change under an adaptive policy).
INTERVAL: Final = 8  #: tracker: the negotiated ping interval
DELAY_SPAN: Final = 9  #: tracker: a ping delay is INTERVAL + DELAY_SPAN * random()
TIMEOUT: Final = 10  #: tracker: dead after this much silence
SUSPECT_AFTER: Final = 11  #: tracker: suspect after this much silence
STARTED: Final = 12  #: session: when the connection was made
SIZE: Final = 13

#: ``FIRST_PING`` when no PING went out into the current silence.
NO_TIME: Final = -math.inf
#: ``RTT_STAGED`` when no sample waits (a real one is never negative).
NO_SAMPLE: Final = -1.0

_TEMPLATE = array("d", bytes(8 * SIZE))
_TEMPLATE[FIRST_PING] = NO_TIME
_TEMPLATE[RTT_STAGED] = NO_SAMPLE


def new_record(now: float) -> array[float]:
    """A record for a connection made at ``now``: every time at ``now``, counters at 0."""
    record = array("d", _TEMPLATE)
    record[LAST_EVIDENCE] = record[LAST_SENT] = record[LAST_PING] = now
    record[PINGS_FULL_AT] = record[STARTED] = now
    return record
