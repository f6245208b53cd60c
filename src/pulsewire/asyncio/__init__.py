"""The native asyncio driver: one loop-wide deadline scheduler, ``BufferedProtocol`` I/O."""

from pulsewire.asyncio.client import Client, ClientStats, connect
from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.server import Handler, Listener, ListenerStats, Server, serve

__all__ = [
    "Client",
    "ClientStats",
    "Connection",
    "Handler",
    "Listener",
    "ListenerStats",
    "Server",
    "connect",
    "serve",
]
