"""``pulsewire demo --netns``: two faults that need a real network between two hosts.

Built on :class:`pulsewire.cli.netns.TwoHosts` (Linux network namespaces, root), one pair of
hosts per fault. Host a runs the demo's observer (:mod:`pulsewire.cli.demo_observer`: the
same pulsewire server and keepalive socket listener as on loopback), host b runs the peer
(:mod:`pulsewire.cli.peer`). Then:

- **blackholed**: every packet between the hosts is dropped (a pulled cable, a host that
  lost power). Nothing comes back, not even from the peer's kernel: pulsewire convicts
  after ``timeout`` (TIMEOUT); kernel keepalive at 1 s / 1 s / 1 probe, after ~2 s.
- **crashed and rebooted**: host b loses its network stack, processes and sockets at once
  (no FIN, no RST) and comes back on the same address knowing nothing of the
  connections: the next segment host a sends is answered with RST (RESET).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from pulsewire.cli.demo_runner import Fault, Peer, Reporter, peer_policy
from pulsewire.cli.netns import HostProcess, NetnsError, TwoHosts, netns_available
from pulsewire.cli.options import CliError
from pulsewire.core.events import Death, Source
from pulsewire.core.policy import Policy
from pulsewire.core.states import Reason, State

__all__ = ["NetnsPeers", "unavailable"]

_READY_WITHIN = 15.0

#: key, label, what happens to the pair of hosts, expected pulsewire verdict
_FAULTS: tuple[tuple[str, str, Callable[[TwoHosts], Any], tuple[str, ...]], ...] = (
    ("blackholed", "blackholed (cable cut)", TwoHosts.blackhole, ("timeout",)),
    ("rebooted", "crashed and rebooted", TwoHosts.reboot, ("reset",)),
)


def unavailable() -> str | None:
    """Why ``--netns`` cannot run here, or None."""
    return netns_available()


def _apply(peer: Peer, message: dict[str, Any]) -> None:
    """Copy an observer's snapshot onto the demo's record of the peer."""
    peer.state = State(message["state"])
    peer.rtt = message["rtt"]
    peer.silence = message["silence"]
    peer.suspected_at = message["suspected_at"]
    peer.recovered_at = message["recovered_at"]
    peer.stalled_at = message["stalled_at"]
    peer.died_at = message["died_at"]
    peer.kernel_verdict = message["kernel_verdict"]
    peer.kernel_at = message["kernel_at"]
    peer.plain_connected = message["plain_connected"]
    death = message["death"]
    if death is not None and peer.death is None:
        peer.death = Death(
            reason=Reason(death["reason"]),
            source=Source(death["source"]),
            silence=death["silence"],
            last_rtt=death["last_rtt"],
        )


class NetnsPeers:
    """The ``--netns`` peers, for :func:`~pulsewire.cli.demo_runner.run_demo`."""

    def __init__(self) -> None:
        self.pairs: list[TwoHosts] = []
        self._seen: dict[str, int] = {}

    async def start(self, policy: Policy, first: int, reporter: Reporter | None) -> list[Peer]:
        setups = [
            self._start_one(policy, f"peer-{first + offset}", spec, reporter)
            for offset, spec in enumerate(_FAULTS)
        ]
        try:
            return list(await asyncio.gather(*setups))
        except (NetnsError, TimeoutError) as error:
            raise CliError(f"--netns: could not set up the hosts: {error}") from None

    async def _start_one(
        self,
        policy: Policy,
        name: str,
        spec: tuple[str, str, Callable[[TwoHosts], Any], tuple[str, ...]],
        reporter: Reporter | None,
    ) -> Peer:
        key, label, action, expected = spec
        hosts = TwoHosts()
        self.pairs.append(hosts)
        await asyncio.to_thread(hosts.start)
        observer = hosts.spawn(
            hosts.a,
            sys.executable,
            "-m",
            "pulsewire.cli.demo_observer",
            "--host",
            hosts.a.address,
            "--name",
            name,
            "--policy",
            msgspec.json.encode(policy).decode(),
        )
        ready = (await asyncio.to_thread(observer.wait_for, "ready", _READY_WITHIN))[0]
        hosts.spawn(
            hosts.b,
            sys.executable,
            "-m",
            "pulsewire.cli.peer",
            "--host",
            hosts.a.address,
            "--port",
            str(ready["port"]),
            "--plain-port",
            str(ready["plain_port"]),
            "--name",
            name,
            "--policy",
            msgspec.json.encode(peer_policy(policy)).decode(),
        )

        async def inject(peer: Peer) -> None:
            await asyncio.to_thread(action, hosts)

        def feed(peer: Peer) -> None:
            self._feed(peer, observer, reporter)

        return Peer(name=name, fault=Fault(key, label, inject, expected), feed=feed)

    def _feed(self, peer: Peer, observer: HostProcess, reporter: Reporter | None) -> None:
        messages = observer.messages()
        new = messages[self._seen.get(peer.name, 0) :]
        self._seen[peer.name] = len(messages)
        latest = None
        for message in new:
            if message.get("event") == "say" and reporter is not None:
                reporter.event(peer, message["text"], message["at"])
            elif message.get("event") == "peer":
                latest = message
        if latest is not None:
            _apply(peer, latest)

    async def close(self) -> None:
        problems = []
        for hosts in self.pairs:
            try:
                await asyncio.to_thread(hosts.close)
            except NetnsError as error:
                problems.append(str(error))
        self.pairs.clear()
        if problems:
            with contextlib.suppress(OSError):
                print(f"pulsewire demo: cleaning up: {'; '.join(problems)}", file=sys.stderr)
