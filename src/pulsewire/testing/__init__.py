"""Public test kit: drive pulsewire sessions in memory, on a fake clock, in your own tests.

- :class:`SessionPair` joins a client and a server session through two :class:`Wire`\\ s
  whose bytes can be delivered, held, dropped or torn (:class:`WireMode`); the clock is a
  float the test moves (``advance``, ``step_to_deadline``, ``jump``), so an hour of
  protocol time takes a millisecond and every run repeats exactly. :data:`Side` names
  either end.
- :func:`opening_bytes`, :func:`control_frame`, :func:`data_frame` build raw wire bytes to
  play a misbehaving peer; :func:`parse_frames` and :func:`decode_control` read what a
  session sent (:data:`Control`: any decoded control frame).
- :func:`load_vectors` reads the protocol's test vectors (:class:`Vectors`: valid frames
  with their meaning, malformed inputs with the CLOSE code a receiver sends), which
  implementations in other languages can use as the JSON file ``vectors.json`` beside it.
- :func:`memory_stream_pair` joins two in-memory anyio byte streams
  (:class:`MemoryByteStream`, which can :meth:`~MemoryByteStream.freeze` like a stopped
  peer), to run :mod:`pulsewire.anyio` connections without sockets, on trio's
  ``MockClock`` if you like.
"""

from pulsewire.testing.frames import (
    Control,
    control_frame,
    data_frame,
    decode_control,
    opening_bytes,
    parse_frames,
)
from pulsewire.testing.pair import SessionPair, Side
from pulsewire.testing.streams import MemoryByteStream, memory_stream_pair
from pulsewire.testing.vectors import MalformedInput, Receiver, ValidFrame, Vectors, load_vectors
from pulsewire.testing.wire import Wire, WireMode

__all__ = [
    "Control",
    "MalformedInput",
    "MemoryByteStream",
    "Receiver",
    "SessionPair",
    "Side",
    "ValidFrame",
    "Vectors",
    "Wire",
    "WireMode",
    "control_frame",
    "data_frame",
    "decode_control",
    "load_vectors",
    "memory_stream_pair",
    "opening_bytes",
    "parse_frames",
]
