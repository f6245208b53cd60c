"""The portable driver: pulsewire over any anyio byte stream, on asyncio or trio.

TCP, TLS (``ssl_context=``), Unix sockets, or any :class:`anyio.abc.ByteStream` you
opened yourself (:func:`wrap`; anyio memory streams in tests). The same surface as the
asyncio driver, shaped for structured concurrency: :func:`connect`, :func:`connect_unix`,
:func:`wrap` and :class:`Client` are async context managers that own the connection's
task group; :class:`Listener` wraps any anyio listener and serves in the caller's task
group (``await listener.serve(handler, task_group)``), and :func:`serve` is the plain
``serve(handler, host, port)``. Time is ``anyio.current_time()``: under trio's
``MockClock`` every heartbeat runs in virtual time.
"""

from pulsewire.anyio.attributes import PulsewireAttribute
from pulsewire.anyio.client import Client, connect, connect_unix, wrap
from pulsewire.anyio.connection import Connection
from pulsewire.anyio.server import Handler, Listener, Server, serve, serve_unix
from pulsewire.driverkit.connecting import ClientStats
from pulsewire.driverkit.hooks import ListenerStats

__all__ = [
    "Client",
    "ClientStats",
    "Connection",
    "Handler",
    "Listener",
    "ListenerStats",
    "PulsewireAttribute",
    "Server",
    "connect",
    "connect_unix",
    "serve",
    "serve_unix",
    "wrap",
]
