"""The sans-I/O core: bytes and a monotonic ``now`` in; bytes, events and a deadline out.

Nothing in this package performs I/O, reads a clock, or imports asyncio, anyio, socket,
time or structlog (a lint rule and a test keep it so). Every timing behaviour is therefore
testable with a fake clock, instantly and deterministically.
"""

from pulsewire.core.backoff import Backoff
from pulsewire.core.events import (
    Death,
    Died,
    Event,
    HandshakeCompleted,
    MessageReceived,
    PingAnswered,
    Recovered,
    Source,
    Suspected,
)
from pulsewire.core.frames import CloseCode
from pulsewire.core.heartbeat import Heartbeat
from pulsewire.core.keepalive import KernelKeepalive, SocketOptions
from pulsewire.core.liveness import Decision, LivenessTracker
from pulsewire.core.load import ServerLoad
from pulsewire.core.policy import Adaptive, Evidence, Limits, Policy, ServerLimits
from pulsewire.core.session import Negotiated, Session
from pulsewire.core.states import Reason, State
from pulsewire.core.stats import SessionStats

__all__ = [
    "Adaptive",
    "Backoff",
    "CloseCode",
    "Death",
    "Decision",
    "Died",
    "Event",
    "Evidence",
    "HandshakeCompleted",
    "Heartbeat",
    "KernelKeepalive",
    "Limits",
    "LivenessTracker",
    "MessageReceived",
    "Negotiated",
    "PingAnswered",
    "Policy",
    "Reason",
    "Recovered",
    "ServerLimits",
    "ServerLoad",
    "Session",
    "SessionStats",
    "SocketOptions",
    "Source",
    "State",
    "Suspected",
]
