"""The native asyncio driver: one loop-wide deadline scheduler, ``BufferedProtocol`` I/O."""

from pulsewire.asyncio.client import Client, ClientStats, connect, connect_unix
from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.server import Handler, Listener, ListenerStats, Server, serve, serve_unix
from pulsewire.asyncio.streams import wrap_streams

__all__ = [
    "Client",
    "ClientStats",
    "Connection",
    "Handler",
    "Listener",
    "ListenerStats",
    "Server",
    "connect",
    "connect_unix",
    "serve",
    "serve_unix",
    "wrap_streams",
]
