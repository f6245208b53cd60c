"""The demo's observer inside a network namespace (``pulsewire demo --netns``).

``python -m pulsewire.cli.demo_observer --host ADDRESS --name NAME --policy JSON`` runs,
on ``ADDRESS``, the demo's pulsewire server and its plain keepalive socket listener for
one peer called ``NAME``, exactly as the demo does on loopback, and reports on stdout as
JSON lines: ``{"event": "ready", "port": P, "plain_port": Q}`` once listening, then
``{"event": "say", "text": ..., "at": T}`` for each event and ``{"event": "peer", ...}``,
a snapshot of what it knows of the peer, ten times a second. Instants are
``time.monotonic()`` seconds, which every network namespace shares. It runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import msgspec

from pulsewire.asyncio.server import serve
from pulsewire.cli.demo_runner import DemoServer, Fault, KeepaliveWatcher, Observer, Peer
from pulsewire.cli.options import configure_logging
from pulsewire.core.policy import Policy

__all__ = ["main", "snapshot"]


def _emit(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


class _JsonLines:
    """A demo reporter that prints each event as a JSON line."""

    def connected(self, peers: list[Peer]) -> None:
        pass

    def injected(self, started: float) -> None:
        pass

    def event(self, peer: Peer, text: str, at: float) -> None:
        _emit({"event": "say", "text": text, "at": at})

    def tick(self) -> None:
        pass

    def stop(self) -> None:
        pass


def snapshot(peer: Peer) -> dict[str, Any]:
    """What the observer knows of the peer, as a JSON-ready dict."""
    death = peer.death
    return {
        "event": "peer",
        "state": peer.state.value,
        "rtt": peer.rtt,
        "silence": peer.silence,
        "suspected_at": peer.suspected_at,
        "recovered_at": peer.recovered_at,
        "stalled_at": peer.stalled_at,
        "died_at": peer.died_at,
        "death": None
        if death is None
        else {
            "reason": death.reason.value,
            "source": death.source.value,
            "silence": death.silence,
            "last_rtt": death.last_rtt,
        },
        "kernel_verdict": peer.kernel_verdict,
        "kernel_at": peer.kernel_at,
        "plain_connected": peer.plain_connected,
    }


async def _nothing(peer: Peer) -> None:
    pass


async def observe(host: str, name: str, policy: Policy) -> None:
    loop = asyncio.get_running_loop()
    observer = Observer(loop)
    peer = Peer(name=name, fault=Fault("observed", name, _nothing, ()))
    observer.peers[name] = peer
    observer.reporter = _JsonLines()
    listener = await serve(DemoServer(observer), host, 0, policy=policy, name="demo")
    plain = await loop.create_server(lambda: KeepaliveWatcher(observer), host, 0)
    _emit(
        {"event": "ready", "port": listener.port, "plain_port": plain.sockets[0].getsockname()[1]}
    )
    while True:
        peer.poll()
        _emit(snapshot(peer))
        await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--policy", default="{}", help="the Policy as JSON")
    args = parser.parse_args()
    configure_logging(verbose=False)
    try:
        asyncio.run(observe(args.host, args.name, msgspec.json.decode(args.policy, type=Policy)))
    except Exception as error:
        _emit({"event": "error", "error": str(error)})
        sys.exit(1)


if __name__ == "__main__":
    main()
