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
from pulsewire.config import Config, load_config, parse_config
from pulsewire.core import (
    Adaptive,
    Backoff,
    CloseCode,
    Death,
    Evidence,
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
    "Config",
    "ConnectError",
    "Connection",
    "ConnectionClosedError",
    "Death",
    "Evidence",
    "Handler",
    "HandshakeError",
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
    "load_config",
    "parse_config",
    "serve",
]
