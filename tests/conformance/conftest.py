"""The conformance suite's matrix: (driver, transport) adapters on every event loop.

Every scenario in this directory runs once per **driver** (``asyncio``: the native
driver; ``anyio``: :mod:`pulsewire.anyio`), **backend** (asyncio, uvloop, trio; the
asyncio driver runs on asyncio and uvloop only) and **transport** (TCP, TLS, Unix
socket). A (driver, transport) pair is one small :class:`Adapter`: how the side under
test connects to a peer process (once, or with a reconnecting client), and how it listens
for one. Peers are real
``tests/drivers/peer.py`` processes (:mod:`peers`), signalled by PID.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import anyio
import pytest
import trustme
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import pulsewire
import pulsewire.anyio
from peers import SpawnPeer, peer_spawner
from pulsewire import Backoff, Limits, Policy, SocketOptions

TRANSPORTS = ("tcp", "tls", "unix")
#: (event loop, driver): the asyncio driver runs on asyncio event loops only.
MATRIX = [
    ("asyncio", "asyncio"),
    ("uvloop", "asyncio"),
    ("asyncio", "anyio"),
    ("uvloop", "anyio"),
    ("trio", "anyio"),
]


def _backend(loop: str) -> tuple[str, dict[str, Any]]:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return "asyncio", {"loop_factory": uvloop.new_event_loop}
    return loop, {}


@pytest.fixture(params=MATRIX, ids=[f"{loop}-{driver}" for loop, driver in MATRIX])
def loop_and_driver(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(loop_and_driver: tuple[str, str]) -> tuple[str, dict[str, Any]]:
    return _backend(loop_and_driver[0])


@pytest.fixture
def driver(loop_and_driver: tuple[str, str]) -> str:
    return loop_and_driver[1]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ---------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class Tls:
    """A throwaway CA and a certificate for ``localhost``, as files and as contexts."""

    directory: Path  #: server.pem (certificate chain and key) and ca.pem, for the peers

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.directory / "server.pem")
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.directory / "ca.pem"))


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    certificate = ca.issue_cert("localhost")
    certificate.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return Tls(directory)


# ---------------------------------------------------------------- the adapters


class Connection(Protocol):
    """What the scenarios use of a connection: both drivers' ``Connection`` have it."""

    @property
    def death(self) -> pulsewire.Death | None: ...

    def stats(self) -> pulsewire.SessionStats: ...

    async def send(self, message: bytes) -> None: ...

    async def recv(self) -> bytes: ...

    async def wait_dead(self) -> pulsewire.Death: ...

    async def ping(self) -> float: ...

    async def close(self, code: int = ..., reason: str = ...) -> pulsewire.Death: ...


class Client(Protocol):
    """What the scenarios use of a reconnecting client: both drivers' ``Client`` have it."""

    def stats(self) -> pulsewire.ClientStats: ...

    async def connection(self) -> Connection: ...

    def __aiter__(self) -> AsyncIterator[Connection]: ...

    async def __aenter__(self) -> Client: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@dataclass
class Listening:
    """The side under test listens: where the peer finds it, and what it accepts."""

    peer_flags: list[str]  #: how a peer process reaches it (``--port P``, ``--unix PATH``)
    stats: Callable[[], pulsewire.ListenerStats]
    _accepted: MemoryObjectReceiveStream[Connection] = field(repr=False)

    async def next(self, within: float = 10.0) -> Connection:
        """The next connection whose handshake completed."""
        with anyio.fail_after(within):
            return await self._accepted.receive()


def _holding(
    channel: MemoryObjectSendStream[Connection],
) -> Callable[[Any], Awaitable[None]]:
    """A handler that hands each connection to the test and holds it until it dies."""

    async def hold(connection: Any) -> None:
        await channel.send(connection)
        await connection.wait_dead()

    return hold


@dataclass
class Adapter:
    """One driver on one transport: how to connect to a peer, how to listen for one."""

    driver: str
    transport: str
    tls: Tls
    socket_path: Path

    @property
    def peer_flags(self) -> list[str]:
        """Flags that put a peer process on this transport."""
        if self.transport == "tls":
            return ["--tls", str(self.tls.directory)]
        if self.transport == "unix":
            return ["--unix", str(self.socket_path)]
        return []

    def peer_target(self, ready: list[str]) -> Any:
        """Where the peer server listens, from its READY line."""
        return self.socket_path if self.transport == "unix" else int(ready[0])

    @contextlib.asynccontextmanager
    async def connect(
        self,
        target: Any,
        *,
        policy: Policy,
        limits: Limits | None = None,
        socket_options: SocketOptions | None = None,
    ) -> AsyncIterator[Connection]:
        options: dict[str, Any] = {"policy": policy, "limits": limits}
        if self.transport != "unix":
            options["socket_options"] = socket_options
        if self.driver == "anyio":
            if self.transport == "unix":
                opened = pulsewire.anyio.connect_unix(str(target), policy=policy, limits=limits)
            else:
                context = self.tls.client_context() if self.transport == "tls" else None
                opened = pulsewire.anyio.connect(
                    "127.0.0.1", target, ssl_context=context, tls_hostname="localhost", **options
                )
            async with opened as connection:
                yield connection
            return
        if self.transport == "unix":
            connection = await pulsewire.connect_unix(str(target), **options)
        else:
            tls = self.transport == "tls"
            connection = await pulsewire.connect(
                "127.0.0.1",
                target,
                ssl=self.tls.client_context() if tls else None,
                server_hostname="localhost" if tls else None,
                **options,
            )
        try:
            yield connection
        finally:
            if connection.death is None:
                connection.abort()

    def client(
        self,
        target: Any,
        *,
        policy: Policy,
        backoff: Backoff,
        max_attempts: int | None = None,
        retry_if: Callable[[pulsewire.ConnectError], bool] | None = None,
    ) -> Client:
        """A reconnecting client of this driver for ``target`` (not started: ``async with``)."""
        options: dict[str, Any] = {
            "policy": policy,
            "backoff": backoff,
            "max_attempts": max_attempts,
            "retry_if": retry_if,
        }
        if self.transport == "unix":
            options["path"] = str(target)
        else:
            options["host"], options["port"] = "127.0.0.1", target
        tls = self.tls.client_context() if self.transport == "tls" else None
        if self.driver == "anyio":
            if tls is not None:
                options.update(ssl_context=tls, tls_hostname="localhost")
            return pulsewire.anyio.Client(**options)
        if tls is not None:
            options.update(ssl=tls, server_hostname="localhost")
        return pulsewire.Client(**options)

    def nowhere(self) -> Any:
        """A target nobody listens on: a port free a moment ago, or a socket path unused."""
        if self.transport == "unix":
            return self.socket_path  # nothing listens there unless the test calls listen()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    @contextlib.asynccontextmanager
    async def listen(
        self,
        *,
        policy: Policy,
        limits: Limits | None = None,
        socket_options: SocketOptions | None = None,
    ) -> AsyncIterator[Listening]:
        send, receive = anyio.create_memory_object_stream[Connection](100)
        handler = _holding(send)
        options: dict[str, Any] = {"policy": policy, "limits": limits}
        if self.transport != "unix":
            options["socket_options"] = socket_options
        context = self.tls.server_context() if self.transport == "tls" else None
        with send, receive:
            if self.driver == "anyio":
                async with anyio.create_task_group() as tasks:
                    if self.transport == "unix":
                        listener = await tasks.start(
                            _starter(
                                pulsewire.anyio.serve_unix,
                                handler,
                                str(self.socket_path),
                                **options,
                            )
                        )
                        flags = ["--unix", str(self.socket_path)]
                    else:
                        listener = await tasks.start(
                            _starter(pulsewire.anyio.serve, handler, ssl_context=context, **options)
                        )
                        flags = ["--port", str(listener.port), *self.peer_flags]
                    yield Listening(flags, listener.stats, receive)
                    tasks.cancel_scope.cancel()
                return
            if self.transport == "unix":
                listener = await pulsewire.serve_unix(handler, str(self.socket_path), **options)
                flags = ["--unix", str(self.socket_path)]
            else:
                listener = await pulsewire.serve(handler, ssl=context, **options)
                flags = ["--port", str(listener.port), *self.peer_flags]
            async with listener:
                yield Listening(flags, listener.stats, receive)


def _starter(serve: Callable[..., Awaitable[None]], *args: Any, **kwargs: Any) -> Any:
    """``serve(*args, **kwargs, task_status=...)`` in the form ``TaskGroup.start`` takes."""

    async def start(*, task_status: Any) -> None:
        await serve(*args, task_status=task_status, **kwargs)

    return start


@pytest.fixture
def adapter(driver: str, transport: str, tls: Tls, tmp_path: Path) -> Adapter:
    # A short path: a Unix socket path must fit in 108 bytes.
    socket_path = Path(f"/tmp/pw-{id(tmp_path):x}.sock")
    yield Adapter(driver, transport, tls, socket_path)
    socket_path.unlink(missing_ok=True)


@pytest.fixture
async def spawn(anyio_backend: Any) -> AsyncIterator[SpawnPeer]:
    """``await spawn("server", ...)`` starts a peer process and waits for its READY line."""
    async with peer_spawner() as spawner:
        yield spawner
