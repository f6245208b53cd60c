"""Kernel keepalive only: for a connection whose protocol you cannot change.

Run:  .venv/bin/python examples/kernel_keepalive_only.py HOST PORT

Connects a plain asyncio stream to HOST:PORT (any TCP server), asks the kernel to probe it
as tightly as it allows (``pulsewire.kernel.apply_keepalive``; 1 s idle, 1 s between
probes, 3 probes) and to give up on unacknowledged data after 5 s (``TCP_USER_TIMEOUT``),
prints what the kernel took and the worst-case detection times, and waits until the
connection ends, saying how: ``eof`` (FIN), ``reset`` (RST) or ``timeout`` (the probes
or the retransmissions went unanswered).

What this cannot see: a peer process that is frozen, deadlocked or blocked while its
kernel still answers the probes. That takes a heartbeat answered by the peer's
application: pulsewire, whose connections can also carry these kernel settings
(``socket_options=SocketOptions(keepalive=KernelKeepalive(...))``) as a second opinion.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pulsewire
from pulsewire.kernel import apply_keepalive


async def main(host: str, port: int) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    report = apply_keepalive(
        writer.get_extra_info("socket"),
        pulsewire.KernelKeepalive(idle=1, interval=1, count=3, user_timeout=5),
    )
    print(report.describe(), flush=True)
    print("CONNECTED", flush=True)
    started = time.monotonic()
    try:
        while await reader.read(65536):
            pass  # this example only watches the connection
        how = "eof"
    except ConnectionResetError:
        how = "reset"
    except TimeoutError:
        how = "timeout"
    finally:
        writer.close()
    print(f"connection ended: {how} after {time.monotonic() - started:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]))))
