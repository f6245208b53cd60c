"""Serving over anyio: a ``Listener`` that wraps any anyio listener, and ``serve()``.

Handler errors follow the asyncio driver's rule (:mod:`pulsewire.driverkit.hooks`): a
hook or handler function that raises is logged (``handler.error``) and its connection
closed with INTERNAL_ERROR; the error does not reach the task group, so one connection's
bug never ends the others. Cancellation does reach everything: cancelling the task group
that serves ends every connection (each says CLOSE GOING_AWAY, best effort, and dies of
``LOCAL_CLOSE``), and no task outlives it.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, final

import anyio
from anyio import TASK_STATUS_IGNORED, TypedAttributeProvider
from anyio.abc import ByteStream, SocketAttribute, TaskGroup, TaskStatus
from anyio.abc import Listener as AnyioListener
from anyio.streams.tls import TLSListener

from pulsewire import logevents
from pulsewire._log import LoggerLike, event_logger, get_logger
from pulsewire.anyio.connection import Connection
from pulsewire.anyio.driver import StreamDriver
from pulsewire.core.frames import CloseCode
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy
from pulsewire.driverkit.hooks import HookRunner, ListenerStats, ServerHooks
from pulsewire.errors import UsageError

__all__ = ["Handler", "Listener", "Server", "serve", "serve_unix"]

_log = get_logger()

#: A connection handler: called with each connection once its handshake completes; the
#: connection is closed in order when it returns (or raises: logged, INTERNAL_ERROR).
Handler = Callable[[Connection], Awaitable[None]]


class Server(ServerHooks[Connection]):
    """Subclass and override the hooks you need; every default does nothing.

    The same hooks, run by the same rules, as the asyncio driver's
    :class:`pulsewire.Server` (:class:`pulsewire.driverkit.hooks.ServerHooks`): one at a
    time per connection, in the order of its events; a hook that raises is logged and
    closes its connection with INTERNAL_ERROR.
    """


@final
class Listener(TypedAttributeProvider):
    """Serves pulsewire over any anyio listener of byte streams (TCP, TLS, Unix, ...).

    It fits anyio's ``Listener.serve(handler, task_group)`` idiom::

        inner = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=7000)
        async with pulsewire.anyio.Listener(inner, policy=Policy.lan()) as listener:
            await listener.serve(handler)  # or a Server instance

    Each accepted stream becomes a :class:`Connection` with its own task group (its
    reader, writer and hooks), started in ``task_group`` (default: one of the listener's
    own). The inner listener's typed attributes pass through
    (``SocketAttribute.local_port``, ...).
    """

    def __init__(
        self,
        listener: AnyioListener[ByteStream],
        *,
        policy: Policy | None = None,
        limits: Limits | None = None,
        socket_options: SocketOptions | None = None,
        name: str = "",
        logger: LoggerLike | None = None,
    ) -> None:
        #: The anyio listener it accepts from.
        self.listener = listener
        self._log = event_logger(logger, _log)
        #: The policy of every connection.
        self.policy = policy if policy is not None else Policy()
        #: The limits of every connection.
        self.limits = limits if limits is not None else Limits()
        #: The socket options of every connection.
        self.socket_options = socket_options if socket_options is not None else SocketOptions()
        #: The name it sends in its HELLOs.
        self.name = name
        self._runner: HookRunner[Connection] | None = None
        self._hook_groups: dict[Connection, TaskGroup] = {}
        self._closing = False

    # ------------------------------------------------------------------ public

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The anyio listener's typed attributes (``SocketAttribute.local_port``, ...)."""
        return self.listener.extra_attributes

    @property
    def port(self) -> int:
        """The local TCP port (useful after listening on port 0)."""
        port: int = self.extra(SocketAttribute.local_port)
        return port

    @property
    def connections(self) -> frozenset[Connection]:
        """Connections accepted and not yet dead (including those still handshaking)."""
        return frozenset() if self._runner is None else self._runner.connections

    def stats(self) -> ListenerStats:
        """A frozen snapshot: connections accepted, active, and deaths by reason."""
        if self._runner is None:
            return ListenerStats(accepted=0, active=0, deaths={})
        return self._runner.stats()

    async def serve(self, handler: Server | Handler, task_group: TaskGroup | None = None) -> None:
        """Accept connections and serve each with ``handler`` until cancelled or closed.

        ``handler`` is a :class:`Server` (hooks) or an ``async def handler(connection)``,
        run after the handshake; the connection is closed in order when it returns.
        """
        if self._runner is not None:
            raise UsageError("serve() was already called on this listener")
        self._runner = HookRunner(handler, self._spawn, self._log)
        self._log.info(
            logevents.SERVER_LISTENING,
            name=self.name,
            addresses=[self.extra(SocketAttribute.local_address, "?")],
        )
        try:
            await self.listener.serve(self._serve_one, task_group)
        except (anyio.ClosedResourceError, BaseExceptionGroup) as error:
            # aclose() closed the inner listener under its accept loop (a MultiListener
            # reports it from a task group of its own): the end of serving, not an error.
            if not self._closing:
                raise
            if isinstance(error, BaseExceptionGroup):
                _, rest = error.split(anyio.ClosedResourceError)
                if rest is not None:
                    raise

    async def aclose(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "server closing"
    ) -> None:
        """Stop accepting, then close every connection in order (each bounded)."""
        self._closing = True
        await self.listener.aclose()
        async with anyio.create_task_group() as closing:
            for connection in self.connections:
                closing.start_soon(connection.close, code, reason)
        self._log.info(logevents.SERVER_CLOSED, name=self.name, accepted=self.stats().accepted)

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ internals

    async def _serve_one(self, stream: ByteStream) -> None:
        runner = self._runner
        assert runner is not None
        driver = StreamDriver(
            stream,
            policy=self.policy,
            limits=self.limits,
            socket_options=self.socket_options,
            name=self.name,
            initiator=False,
            log=self._log,
        )
        connection = Connection(driver, observer=runner)
        # The connection's hooks and handler run in a task group of its own, which ends
        # after the last of them: on_dead comes after the death.
        async with anyio.create_task_group() as hooks:
            self._hook_groups[connection] = hooks
            runner.connection_made(connection)
            try:
                await connection.run()
            finally:
                del self._hook_groups[connection]

    def _spawn(self, connection: Connection, call: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._hook_groups[connection].start_soon(call)


async def serve(
    handler: Server | Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    policy: Policy | None = None,
    limits: Limits | None = None,
    socket_options: SocketOptions | None = None,
    ssl_context: ssl.SSLContext | None = None,
    name: str = "",
    backlog: int = 1024,
    logger: LoggerLike | None = None,
    task_status: TaskStatus[Listener] = TASK_STATUS_IGNORED,
) -> None:
    """Listen on TCP (TLS with ``ssl_context``) and serve ``handler`` until cancelled.

    ``logger``: where the listener's and its connections' log events go (as for
    :func:`~pulsewire.anyio.connect`). Start it in a task group to get the
    :class:`Listener` (its port, connections and stats)::

        async with anyio.create_task_group() as tg:
            listener = await tg.start(pulsewire.anyio.serve, handler, "127.0.0.1", 0)
            ...
            tg.cancel_scope.cancel()  # ends every connection
    """
    inner: AnyioListener[ByteStream] = await anyio.create_tcp_listener(
        local_host=host, local_port=port, backlog=backlog
    )
    if ssl_context is not None:
        inner = _TLSListener(inner, ssl_context)
    await _serve_on(inner, handler, policy, limits, socket_options, name, logger, task_status)


class _TLSListener(TLSListener):
    """anyio's ``TLSListener``, passing the TCP listener's attributes through (its port)."""

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {**self.listener.extra_attributes, **super().extra_attributes}


async def serve_unix(
    handler: Server | Handler,
    path: str,
    *,
    policy: Policy | None = None,
    limits: Limits | None = None,
    name: str = "",
    logger: LoggerLike | None = None,
    task_status: TaskStatus[Listener] = TASK_STATUS_IGNORED,
) -> None:
    """Listen on the Unix socket ``path`` and serve ``handler`` until cancelled."""
    inner = await anyio.create_unix_listener(path)
    await _serve_on(inner, handler, policy, limits, None, name, logger, task_status)


async def _serve_on(
    inner: AnyioListener[ByteStream],
    handler: Server | Handler,
    policy: Policy | None,
    limits: Limits | None,
    socket_options: SocketOptions | None,
    name: str,
    logger: LoggerLike | None,
    task_status: TaskStatus[Listener],
) -> None:
    listener = Listener(
        inner,
        policy=policy,
        limits=limits,
        socket_options=socket_options,
        name=name,
        logger=logger,
    )
    async with listener:
        task_status.started(listener)
        await listener.serve(handler)
