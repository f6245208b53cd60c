"""An echo pair over a Unix socket in one program: heartbeats between local processes.

Run:  .venv/bin/python examples/unix_pair.py [--path /run/app/pulse.sock]

Without ``--path`` the socket lives in a fresh temporary directory. The server echoes;
the client sends three messages, asks for a round trip on demand (``ping()``), and closes
in order; the listener then removes the socket file it made. A Unix socket has no TCP
options, so nothing is set on it and ``kernel_report`` stays ``None``: the heartbeat alone
watches the peer (a hung local process is convicted like a remote one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile

import pulsewire

POLICY = pulsewire.Policy(interval=0.2, timeout=1.0)


async def echo(connection: pulsewire.Connection) -> None:
    async for message in connection:
        await connection.send(message)


async def main(path: str) -> int:
    async with await pulsewire.serve_unix(echo, path, policy=POLICY) as server:
        print(f"server: listening on {server.path}", flush=True)
        async with await pulsewire.connect_unix(path, policy=POLICY) as connection:
            for index in range(3):
                await connection.send(b"hello %d" % index)
                print(f"echo: {(await connection.recv()).decode()}", flush=True)
            rtt = await connection.ping()
            print(
                f"client: ping answered in {rtt * 1000:.3f} ms; kernel options: "
                f"{connection.kernel_report}",
                flush=True,
            )
        death = connection.death
        assert death is not None
        print(f"client: closed ({death.reason.value}, clean: {death.clean})", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=None, help="the socket's path (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pulsewire-") as directory:
        path = args.path or os.path.join(directory, "pulse.sock")
        status = asyncio.run(main(path))
        print(f"server: socket file removed: {not os.path.exists(path)}", flush=True)
    sys.exit(status)
