"""Listening sockets, and pulsewire's own accept loop on them.

asyncio's accept loop logs a traceback for every failed ``accept()``, and when the process
is out of file descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM) it retries
at once, up to ``backlog`` times per readable event: a server at its file limit under a
connection flood writes thousands of tracebacks a second. This loop backs off instead: it
stops watching the socket for ``BACKOFF`` seconds (doubling up to ``BACKOFF_MAX`` while the
failures last, back to ``BACKOFF`` after the next success) and logs
``server.accept_failed`` at most once per ``LOG_INTERVAL``, saying how many failures it
held back. Connections keep waiting in the kernel's backlog meanwhile; the established
ones are not disturbed.

Each accepted socket becomes a transport through ``loop.connect_accepted_socket`` (TLS
included), as asyncio's own loop does. A loop that cannot watch sockets (the proactor loop
on Windows) gets ``loop.create_server(sock=...)`` instead, and asyncio's accept loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import ssl as _ssl
import stat
from collections.abc import Callable

from pulsewire import logevents
from pulsewire._log import EventLogger, Throttle

__all__ = ["Acceptor", "tcp_sockets", "unix_socket"]

#: How many connections one readable event accepts before the loop runs anything else.
ACCEPT_BATCH = 128


async def tcp_sockets(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Listening TCP sockets for ``host`` (``None``: every interface) and ``port``, bound
    as ``loop.create_server`` binds them (one per address; ``SO_REUSEADDR``; IPv6 only on
    IPv6 sockets)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if os.name == "posix":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as error:
                raise OSError(
                    error.errno,
                    f"error while attempting to bind on address {address!r}: {error.strerror}",
                ) from None
            sock.listen(backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def unix_socket(path: str, backlog: int) -> socket.socket:
    """A listening Unix socket at ``path``; a stale socket file there is replaced (as
    ``loop.create_unix_server`` does). Linux abstract names start with a NUL."""
    if not path.startswith("\0"):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.remove(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
        raise
    return sock


class Acceptor:
    """Accepts connections on listening sockets; each becomes a transport for a protocol
    from ``factory``. See the module docstring for what it does when ``accept()`` fails."""

    #: Seconds without accepting after a failed ``accept()``, doubled while it fails.
    BACKOFF = 0.1
    BACKOFF_MAX = 1.6
    #: ``server.accept_failed`` is logged at most this often, seconds.
    LOG_INTERVAL = 10.0

    def __init__(
        self,
        sockets: list[socket.socket],
        factory: Callable[[], asyncio.BaseProtocol],
        *,
        ssl: _ssl.SSLContext | None,
        ssl_handshake_timeout: float | None,
        log: EventLogger,
    ) -> None:
        self.sockets = sockets
        self._factory = factory
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._log = log
        self._loop = asyncio.get_running_loop()
        self._watched: list[socket.socket] = []
        self._fallback: list[asyncio.Server] = []
        self._connecting: set[asyncio.Task[None]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._backoff = self.BACKOFF
        self._throttle = Throttle(self.LOG_INTERVAL, clock=self._loop.time)
        self._closed: asyncio.Future[None] = self._loop.create_future()
        #: ``accept()`` calls that failed for want of resources (or any other error).
        self.accept_failures = 0
        #: Accepted sockets whose transport could not be made (a TLS handshake failed).
        self.transport_failures = 0

    async def start(self) -> None:
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                self._loop.add_reader(sock.fileno(), self._accept, sock)
            except NotImplementedError:  # the proactor loop: asyncio's own accept loop
                self._fallback.append(
                    await self._loop.create_server(
                        self._factory,
                        sock=sock,
                        ssl=self._ssl,
                        ssl_handshake_timeout=self._ssl_handshake_timeout,
                    )
                )
            else:
                self._watched.append(sock)

    @property
    def closed(self) -> bool:
        return self._closed.done()

    def close(self) -> None:
        """Stop accepting and close the listening sockets (idempotent)."""
        if self._closed.done():
            return
        self._closed.set_result(None)
        self._unwatch()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for server in self._fallback:
            server.close()
        for sock in self.sockets:
            sock.close()
        for task in self._connecting:
            task.cancel()  # a transport still being made (TLS) is closed with it

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` was called and the transports being made are done."""
        await asyncio.shield(self._closed)
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)
        for server in self._fallback:
            await server.wait_closed()

    # ------------------------------------------------------------------ internals

    def _unwatch(self) -> None:
        for sock in self._watched:
            with contextlib.suppress(ValueError, OSError):  # closed already
                self._loop.remove_reader(sock.fileno())
        self._watched.clear()

    def _watch(self) -> None:
        self._retry = None
        if self._closed.done():
            return
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)
            self._watched.append(sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                connection, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionError:
                continue  # reset by the peer before we took it
            except OSError as error:
                self._failed(error)
                return
            self._backoff = self.BACKOFF
            connection.setblocking(False)
            task = self._loop.create_task(self._connect(connection))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, connection: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self._factory,
                connection,
                ssl=self._ssl,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
            )
        except (OSError, _ssl.SSLError, TimeoutError):
            # A TLS handshake that failed or timed out, a peer gone before it began:
            # asyncio's own accept loop is silent about these too (outside debug mode).
            self.transport_failures += 1
            connection.close()

    def _failed(self, error: OSError) -> None:
        """Out of file descriptors or memory (or refused otherwise): stop watching the
        sockets for a while rather than fail again at once, and say so, rarely."""
        self.accept_failures += 1
        delay = self._backoff
        self._backoff = min(delay * 2, self.BACKOFF_MAX)
        self._unwatch()
        self._retry = self._loop.call_later(delay, self._watch)
        held = self._throttle.allow()
        if held is not None:
            name = errno.errorcode.get(error.errno or 0, str(error.errno))
            self._log.error(
                logevents.SERVER_ACCEPT_FAILED,
                error=f"{name}: {error.strerror}",
                retry_in=round(delay, 3),
                held_back=held,
                failures=self.accept_failures,
            )
