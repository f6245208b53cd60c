"""Public test kit: drive pulsewire sessions in memory on a fake clock, or over real faults.

- :class:`SessionPair` joins a client and a server session through two :class:`Wire`\\ s
  whose bytes can be delivered, held, dropped or torn; the clock is a float the test moves
  (``advance``, ``step_to_deadline``, ``jump``), so an hour of protocol time takes a
  millisecond and every run repeats exactly.
- :func:`opening_bytes`, :func:`control_frame`, :func:`data_frame` build raw wire bytes to
  play a misbehaving peer; :func:`parse_frames` and :func:`decode_control` read what a
  session sent.
- :class:`TwoHosts` (Linux, root) builds two network namespaces joined by a veth pair and
  injects real packet faults between them: blackhole, random loss, a stateful firewall
  that forgets idle flows, a crash and reboot; :func:`netns_available` says whether it can
  run here. The submodule :mod:`pulsewire.testing.endpoints` (import it explicitly: it is
  also the program ``python -m pulsewire.testing.endpoints``) runs pulsewire, plain TCP
  with kernel keepalive, and websockets endpoints on both hosts, which report how each
  connection ended as JSON lines (:func:`~pulsewire.testing.endpoints.serve_and_watch`).
"""

from pulsewire.testing.frames import (
    Control,
    control_frame,
    data_frame,
    decode_control,
    opening_bytes,
    parse_frames,
)
from pulsewire.testing.netns import (
    Host,
    HostProcess,
    NetnsError,
    ProcessEndedError,
    TwoHosts,
    netns_available,
    remove_stale_namespaces,
)
from pulsewire.testing.pair import SessionPair, Side
from pulsewire.testing.wire import Wire, WireMode

__all__ = [
    "Control",
    "Host",
    "HostProcess",
    "NetnsError",
    "ProcessEndedError",
    "SessionPair",
    "Side",
    "TwoHosts",
    "Wire",
    "WireMode",
    "control_frame",
    "data_frame",
    "decode_control",
    "netns_available",
    "opening_bytes",
    "parse_frames",
    "remove_stale_namespaces",
]
