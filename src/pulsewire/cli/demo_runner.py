"""What ``pulsewire demo`` runs: real peers, real faults, pulsewire against kernel keepalive.

On loopback it starts a pulsewire server and one peer process per fault (see
:mod:`pulsewire.cli.peer`). Each peer also holds a plain TCP socket to the demo, with
kernel keepalive tuned as tightly as the kernel allows (1 s idle, 1 s interval, 1 probe)
at both ends. After a short baseline the demo injects every fault at once:

- **frozen**: SIGSTOP. The process is alive but answers nothing; its kernel still
  acknowledges every keepalive probe. pulsewire: TIMEOUT after ``timeout``.
- **killed**: SIGKILL. Its kernel closes the sockets: FIN. pulsewire: EOF at once.
- **reset**: the peer aborts both sockets with SO_LINGER 0: RST. pulsewire: RESET.
- **stalled**: the peer's event loop blocks (a synchronous ``time.sleep``) for a while
  and recovers, as after a blocking call or a long GC pause. The stall lasts halfway
  between the policy's ``suspect_after`` and its ``timeout`` (2.5 s with the default
  policy): pulsewire shows SUSPECT, then ALIVE, and does not declare it dead.

and shows, live, each peer's state, RTT and silence, then a table: the fault, pulsewire's
verdict and detection time, and the kernel keepalive socket's verdict and time.

With ``--netns`` (:mod:`pulsewire.cli.demo_netns`), :class:`RemotePeers` add faults that
need a real network between two hosts; an observer process in the other namespace
(:mod:`pulsewire.cli.demo_observer`) runs the same :class:`DemoServer` and
:class:`KeepaliveWatcher` there and reports what it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from pulsewire.asyncio.connection import Connection
from pulsewire.asyncio.server import Listener, Server, serve
from pulsewire.cli.options import CliError
from pulsewire.cli.peer import STALL_MESSAGE, TIGHTEST_KEEPALIVE
from pulsewire.core.events import Death
from pulsewire.core.policy import Policy
from pulsewire.core.states import State
from pulsewire.kernel import apply_keepalive

__all__ = [
    "ALIVE",
    "QUICK_POLICY",
    "STILL_OPEN",
    "DemoResult",
    "DemoServer",
    "Fault",
    "FaultResult",
    "KeepaliveWatcher",
    "Observer",
    "Peer",
    "RemotePeers",
    "Reporter",
    "peer_policy",
    "run_demo",
    "stall_for",
    "verdict_words",
]

#: ``--quick``: a fast policy, so that the whole demo takes a few seconds (the tests run it).
QUICK_POLICY = Policy(interval=0.3, timeout=1.5)

#: Verdict of a peer that was never declared dead.
ALIVE = "alive"
#: Verdict of a plain socket that the kernel never closed.
STILL_OPEN = "still open"

# Each verdict in words a reader needs no TCP to follow, the same for pulsewire (a
# ``Reason`` value) and for the kernel keepalive socket.
_VERDICT_WORDS = {
    "timeout": "no answer",
    "eof": "connection closed",
    "reset": "connection reset",
    "unreachable": "host unreachable",
    "protocol_error": "broke the protocol",
    "local_close": "closed by this side",
}


def verdict_words(verdict: str) -> str:
    """``"timeout"`` -> ``"no answer"``; a verdict without words (a socket error's name) as is."""
    return _VERDICT_WORDS.get(verdict, verdict)


# How long after connecting every peer the faults are injected (RTTs show up meanwhile).
_BASELINE = 1.5
_QUICK_BASELINE = 0.6
# Time given, after its worst case, to kernel keepalive and slow verdicts.
_MARGIN = 1.0
_STARTUP_TIMEOUT = 20.0


# --------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------

Injector = Callable[["Peer"], Awaitable[None]]


@dataclass(frozen=True)
class Fault:
    """One fault: how it is injected into its peer, and the verdict pulsewire should give."""

    key: str  #: ``frozen``, ``killed``, ...: stable, for scripts
    label: str  #: for people
    inject: Injector
    #: The pulsewire verdicts that are right: ``Reason`` values, or ``alive``.
    expected: tuple[str, ...]


async def _signal(peer: Peer, sig: signal.Signals) -> None:
    assert peer.process is not None
    os.kill(peer.process.pid, sig)


async def _freeze(peer: Peer) -> None:
    await _signal(peer, signal.SIGSTOP)


async def _kill(peer: Peer) -> None:
    await _signal(peer, signal.SIGKILL)


async def _reset(peer: Peer) -> None:
    await _signal(peer, signal.SIGUSR1)


async def _stall(peer: Peer) -> None:
    await _signal(peer, signal.SIGUSR2)


def stall_for(policy: Policy) -> float:
    """How long the stalled peer blocks: halfway between ``suspect_after`` and ``timeout``.

    Long enough to be suspected, short enough to be forgiven: 2.5 s with the default policy
    (suspect after 2 s, dead after 3 s). An adaptive policy's timeout is its ceiling until
    it has seen ``warmup`` response delays, which the demo's short baseline does not reach.
    """
    return round((policy.effective_suspect_after + policy.timeout) / 2, 2)


def peer_policy(policy: Policy) -> Policy:
    """The peers' policy: the demo's, pinging half as often.

    On an idle connection only the side whose interval expires first pings (the other
    has its evidence when the PING arrives). With the peers slower, the server always
    pings, and its PONGs measure the RTTs that the demo shows. The server's verdicts,
    which are what the demo reports, depend on the server's policy alone.
    """
    fields = msgspec.structs.asdict(policy)
    fields.update(interval=policy.interval * 2, timeout=policy.timeout * 2, suspect_after=None)
    return Policy(**fields)


def standard_faults(stall: float, policy: Policy) -> list[Fault]:
    """The four faults every run injects."""
    return [
        Fault("frozen", "frozen (SIGSTOP)", _freeze, ("timeout",)),
        # The kernel of a killed process closes its sockets with FIN, or with RST when
        # data reached them unread (a PING in flight as the process died): both say it.
        Fault("killed", "killed (SIGKILL)", _kill, ("eof", "reset")),
        Fault("reset", "reset (RST)", _reset, ("reset",)),
        Fault(
            "stalled",
            f"loop blocked {stall:g} s",
            _stall,
            (ALIVE,) if stall < policy.timeout else ("timeout",),
        ),
    ]


# --------------------------------------------------------------------------------------
# What the demo observes
# --------------------------------------------------------------------------------------


@dataclass
class Peer:
    """One peer and what the demo saw of it; instants in seconds of ``loop.time()``.

    A local peer is a process of ours, watched through the server side of its connection.
    A remote peer (``--netns``) is watched by an observer process in another network
    namespace, whose reports ``feed`` applies on every ``poll()``.
    """

    name: str
    fault: Fault
    process: asyncio.subprocess.Process | None = None
    feed: Callable[[Peer], None] | None = field(default=None, repr=False)
    injected_at: float | None = None
    connection: Connection | None = None
    plain_connected: bool = False
    state: State = State.HANDSHAKE
    rtt: float | None = None
    silence: float = 0.0
    suspected_at: float | None = None
    recovered_at: float | None = None
    stalled_at: float | None = None
    death: Death | None = None
    died_at: float | None = None
    kernel_verdict: str = STILL_OPEN
    kernel_at: float | None = None

    @property
    def ready(self) -> bool:
        """Both of its connections are up."""
        return self.state is not State.HANDSHAKE and self.plain_connected

    def poll(self) -> None:
        """Refresh state, RTT and silence from the server side of the connection."""
        if self.feed is not None:
            self.feed(self)
            return
        connection = self.connection
        if connection is None:
            return
        death = connection.death
        if death is not None:
            self.state = State.DEAD
            self.silence = death.silence
            if death.last_rtt is not None:
                self.rtt = death.last_rtt
            return
        try:
            stats = connection.stats()
        except Exception:  # not established yet, or torn down under us
            return
        self.state = stats.state
        self.silence = stats.silence
        if stats.rtt_last is not None:
            self.rtt = stats.rtt_last


class Reporter(Protocol):
    """Where the demo says what happens: a live view, plain lines, or nothing (``--json``)."""

    def connected(self, peers: list[Peer]) -> None: ...

    def injected(self, started: float) -> None: ...

    def event(self, peer: Peer, text: str, at: float) -> None: ...

    def tick(self) -> None: ...

    def stop(self) -> None: ...


class RemotePeers(Protocol):
    """Peers in other network namespaces, each watched by an observer there (``--netns``)."""

    async def start(self, policy: Policy, first: int, reporter: Reporter | None) -> list[Peer]:
        """Start them (numbered from ``first``); they report through ``Peer.poll``."""
        ...

    async def close(self) -> None: ...


class Observer:
    """Collects what the server and the plain sockets see, per peer name."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.peers: dict[str, Peer] = {}
        self.reporter: Reporter | None = None

    def say(self, peer: Peer, text: str) -> None:
        if self.reporter is not None:
            self.reporter.event(peer, text, self.loop.time())

    def peer(self, name: str) -> Peer | None:
        return self.peers.get(name)


class DemoServer(Server):
    def __init__(self, observer: Observer) -> None:
        self.observer = observer

    async def on_connect(self, connection: Connection) -> None:
        peer = self.observer.peer(connection.peer_name)
        if peer is not None:
            peer.connection = connection
            peer.state = State.ALIVE

    async def on_message(self, connection: Connection, message: bytes) -> None:
        peer = self.observer.peer(connection.peer_name)
        if peer is not None and message.startswith(STALL_MESSAGE):
            peer.stalled_at = self.observer.loop.time()
            self.observer.say(peer, "its event loop is now blocked (time.sleep)")

    async def on_suspect(self, connection: Connection) -> None:
        peer = self.observer.peer(connection.peer_name)
        if peer is not None:
            peer.poll()
            if peer.suspected_at is None:
                peer.suspected_at = self.observer.loop.time()
            self.observer.say(peer, f"pulsewire: SUSPECT, silent for {peer.silence:.2f} s")

    async def on_recover(self, connection: Connection) -> None:
        peer = self.observer.peer(connection.peer_name)
        if peer is not None:
            peer.recovered_at = self.observer.loop.time()
            peer.poll()
            self.observer.say(peer, "pulsewire: ALIVE again")

    async def on_dead(self, connection: Connection, death: Death) -> None:
        peer = self.observer.peer(connection.peer_name)
        if peer is not None and peer.death is None:
            peer.death = death
            peer.died_at = self.observer.loop.time()
            peer.poll()
            reason = death.reason.value
            self.observer.say(
                peer,
                f"pulsewire: DEAD ({reason}: {verdict_words(reason)}), "
                f"silent for {death.silence:.2f} s",
            )


class KeepaliveWatcher(asyncio.Protocol):
    """The demo's end of one peer's plain socket, with kernel keepalive at its tightest."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self.buffer = b""
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            apply_keepalive(sock, TIGHTEST_KEEPALIVE)

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.buffer += data
            if b"\n" in self.buffer:
                self.peer = self.observer.peer(self.buffer.split(b"\n", 1)[0].decode())
                if self.peer is not None:
                    self.peer.plain_connected = True

    def eof_received(self) -> bool:
        self._verdict("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            verdict = "eof"
        elif isinstance(exc, ConnectionResetError):
            verdict = "reset"
        elif isinstance(exc, TimeoutError):
            verdict = "timeout"
        else:
            verdict = type(exc).__name__
        self._verdict(verdict)

    def _verdict(self, verdict: str) -> None:
        peer = self.peer
        if peer is not None and peer.kernel_at is None:
            peer.kernel_verdict = verdict
            peer.kernel_at = self.observer.loop.time()
            self.observer.say(peer, f"kernel keepalive: DEAD ({verdict}: {verdict_words(verdict)})")


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


class PulsewireVerdict(msgspec.Struct, frozen=True, kw_only=True):
    verdict: str  #: a ``Reason`` value, or ``alive`` when never declared dead
    source: str | None  #: who established a death: heartbeat, kernel, peer, local
    after: float | None  #: seconds from the injection to the verdict
    suspect_after: float | None  #: seconds from the injection to SUSPECT, if it came
    recovered_after: float | None  #: seconds from the injection to ALIVE again, if it came
    silence: float  #: the silence at the verdict (or at the end of the run)
    last_rtt: float | None


class KernelVerdict(msgspec.Struct, frozen=True, kw_only=True):
    verdict: str  #: ``still open``, ``eof``, ``reset``, ``timeout``, ...
    after: float | None


class FaultResult(msgspec.Struct, frozen=True, kw_only=True):
    fault: str
    label: str
    peer: str
    expected: list[str]  #: the verdicts that are right (usually one)
    ok: bool  #: pulsewire gave one of them
    pulsewire: PulsewireVerdict
    kernel: KernelVerdict


class DemoResult(msgspec.Struct, frozen=True, kw_only=True):
    policy: str
    policy_description: str
    stall: float
    kernel_keepalive: dict[str, Any]
    duration: float  #: seconds from the injection to the end of the run
    faults: list[FaultResult]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.faults)

    def to_builtins(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)
        data["ok"] = self.ok
        return data


def _since(start: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, at - start), 3)


def _result(peer: Peer, started: float) -> FaultResult:
    started = started if peer.injected_at is None else peer.injected_at
    death = peer.death
    verdict = ALIVE if death is None else death.reason.value
    return FaultResult(
        fault=peer.fault.key,
        label=peer.fault.label,
        peer=peer.name,
        expected=list(peer.fault.expected),
        ok=verdict in peer.fault.expected,
        pulsewire=PulsewireVerdict(
            verdict=verdict,
            source=None if death is None else death.source.value,
            after=_since(started, peer.died_at),
            suspect_after=_since(started, peer.suspected_at),
            recovered_after=_since(started, peer.recovered_at),
            silence=round(peer.silence, 3),
            last_rtt=peer.rtt,
        ),
        kernel=KernelVerdict(verdict=peer.kernel_verdict, after=_since(started, peer.kernel_at)),
    )


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------


async def _start_peer(
    name: str, port: int, plain_port: int, policy: Policy, stall: float
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pulsewire.cli.peer",
        "--port",
        str(port),
        "--plain-port",
        str(plain_port),
        "--name",
        name,
        "--policy",
        msgspec.json.encode(peer_policy(policy)).decode(),
        "--stall",
        str(stall),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _wait_ready(peers: list[Peer]) -> None:
    for peer in peers:
        if peer.process is None:
            continue
        stdout = peer.process.stdout
        assert stdout is not None
        line = await stdout.readline()
        if line.strip() != b"READY":
            code = peer.process.returncode
            raise CliError(f"demo peer {peer.name} failed to start (exit code {code})")
    while not all(peer.ready for peer in peers):
        for peer in peers:
            peer.poll()
        await asyncio.sleep(0.05)


async def _reap(peers: list[Peer]) -> None:
    for peer in peers:
        process = peer.process
        if process is None:
            continue
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), 5)


async def run_demo(
    policy: Policy,
    *,
    policy_name: str = "default",
    stall: float | None = None,
    quick: bool = False,
    reporter: Reporter | None = None,
    remote: RemotePeers | None = None,
) -> DemoResult:
    """Start the server and one peer per fault, inject every fault, collect the verdicts.

    ``remote`` adds peers in other network namespaces, with faults of their own.
    """
    stall = stall_for(policy) if stall is None else stall
    faults = standard_faults(stall, policy)
    loop = asyncio.get_running_loop()
    observer = Observer(loop)
    listener: Listener = await serve(
        DemoServer(observer), "127.0.0.1", 0, policy=policy, name="demo"
    )
    plain_server = await loop.create_server(lambda: KeepaliveWatcher(observer), "127.0.0.1", 0)
    plain_port = plain_server.sockets[0].getsockname()[1]
    peers: list[Peer] = []
    try:
        for index, fault in enumerate(faults):
            name = f"peer-{index}"
            process = await _start_peer(name, listener.port, plain_port, policy, stall)
            peer = Peer(name=name, fault=fault, process=process)
            observer.peers[name] = peer
            peers.append(peer)
        if remote is not None:
            peers += await remote.start(policy, len(peers), reporter)
        try:
            async with asyncio.timeout(_STARTUP_TIMEOUT):
                await _wait_ready(peers)
        except TimeoutError:
            raise CliError(
                f"the demo's peers did not connect within {_STARTUP_TIMEOUT:g} s"
            ) from None
        observer.reporter = reporter
        if reporter is not None:
            reporter.connected(peers)
        await _watch(peers, reporter, _QUICK_BASELINE if quick else _BASELINE)
        started = loop.time()
        if reporter is not None:
            reporter.injected(started)
        await asyncio.gather(*(_inject(peer) for peer in peers))
        keepalive_time = TIGHTEST_KEEPALIVE.nominal_detection_time or 0.0
        at_least = started + keepalive_time + _MARGIN
        deadline = started + max(policy.timeout, stall, keepalive_time) + 2 * _MARGIN
        stall_over = stall + _MARGIN
        while loop.time() < deadline:
            now = loop.time()
            for peer in peers:
                peer.poll()
            if now >= at_least and all(_done(peer, now - started, stall_over) for peer in peers):
                break
            await _watch(peers, reporter, 0.125)
        ended = loop.time()
        for peer in peers:
            peer.poll()
        return DemoResult(
            policy=policy_name,
            policy_description=policy.describe(),
            stall=stall,
            kernel_keepalive={
                "idle": TIGHTEST_KEEPALIVE.idle,
                "interval": TIGHTEST_KEEPALIVE.interval,
                "count": TIGHTEST_KEEPALIVE.count,
                "idle_detection_time": keepalive_time,
            },
            duration=round(ended - started, 3),
            faults=[_result(peer, started) for peer in peers],
        )
    finally:
        if reporter is not None:
            reporter.stop()
        observer.reporter = None
        await _reap(peers)
        if remote is not None:
            await remote.close()
        plain_server.close()
        await listener.close()


async def _inject(peer: Peer) -> None:
    # Signals take hold at once; a namespace fault within its first command (tens of ms).
    peer.injected_at = asyncio.get_running_loop().time()
    await peer.fault.inject(peer)


def _done(peer: Peer, elapsed: float, stall_over: float) -> bool:
    """True when nothing more is to be learnt about this peer."""
    if peer.death is not None:
        return True
    if ALIVE not in peer.fault.expected:
        return False
    # A stalled peer: done once it has been ALIVE again for a moment after its stall.
    return elapsed >= stall_over and peer.state is State.ALIVE


async def _watch(peers: list[Peer], reporter: Reporter | None, seconds: float) -> None:
    """Refresh the peers' figures and the view several times a second for ``seconds``."""
    end = time.monotonic() + seconds
    while True:
        for peer in peers:
            peer.poll()
        if reporter is not None:
            reporter.tick()
        left = end - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(0.125, left))
