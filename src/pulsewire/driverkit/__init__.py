"""What every pulsewire driver shares that is not I/O.

The asyncio driver (:mod:`pulsewire.asyncio`) and the anyio driver (:mod:`pulsewire.anyio`)
move bytes differently; everything else they do alike lives here, written once:

- :mod:`~pulsewire.driverkit.reasons`: the transport's error mapped to a death
  :class:`~pulsewire.Reason`, and a peer address formatted for logs;
- :mod:`~pulsewire.driverkit.logs`: the log event each session event becomes;
- :mod:`~pulsewire.driverkit.hooks`: the ``Server`` hook base class and the rules for
  running hooks and handler functions (one at a time per connection, in event order; a
  hook that raises is logged and closes its connection with INTERNAL_ERROR);
- :mod:`~pulsewire.driverkit.connecting`: what a failed handshake raises, and how a
  reconnecting client backs off after TOO_MANY_PINGS.

Nothing here imports a driver, so each driver imports it without a cycle.
"""
