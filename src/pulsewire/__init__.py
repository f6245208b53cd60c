"""pulsewire: fast, controllable dead-peer detection for long-lived asyncio connections.

This module is the curated public API; it only re-exports.
"""

from pulsewire.asyncio import (
    Client,
    ClientStats,
    Connection,
    Handler,
    Listener,
    ListenerStats,
    Server,
    connect,
    serve,
)
from pulsewire.core import (
    Adaptive,
    Backoff,
    CloseCode,
    Death,
    Decision,
    Evidence,
    Heartbeat,
    KernelKeepalive,
    Limits,
    Policy,
    Reason,
    SessionStats,
    SocketOptions,
    Source,
    State,
)
from pulsewire.errors import (
    ConnectError,
    ConnectionClosedError,
    HandshakeError,
    LocalClosedError,
    PeerDeadError,
    PolicyError,
    ProtocolError,
    PulsewireError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "Adaptive",
    "Backoff",
    "Client",
    "ClientStats",
    "CloseCode",
    "ConnectError",
    "Connection",
    "ConnectionClosedError",
    "Death",
    "Decision",
    "Evidence",
    "Handler",
    "HandshakeError",
    "Heartbeat",
    "KernelKeepalive",
    "Limits",
    "Listener",
    "ListenerStats",
    "LocalClosedError",
    "PeerDeadError",
    "Policy",
    "PolicyError",
    "ProtocolError",
    "PulsewireError",
    "Reason",
    "Server",
    "SessionStats",
    "SocketOptions",
    "Source",
    "State",
    "UsageError",
    "__version__",
    "connect",
    "serve",
]
