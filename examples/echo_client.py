"""An echo client: sends a message a second and prints the echo and the RTT.

Run:  python examples/echo_client.py PORT [COUNT [PAUSE]]
It exits with the reason when the server dies (stop the server with Ctrl-Z to see a
TIMEOUT, or Ctrl-C it to see EOF).
"""

from __future__ import annotations

import asyncio
import logging
import sys

import pulsewire


async def main(port: int, count: int, pause: float) -> int:
    policy = pulsewire.Policy(interval=0.5, timeout=2.0)
    connection = await pulsewire.connect("127.0.0.1", port, policy=policy, name="echo-client")
    try:
        for number in range(count):
            await connection.send(f"hello {number}".encode())
            reply = await connection.recv()
            rtt = connection.rtt
            rtt_text = "n/a" if rtt is None else f"{rtt * 1000:.2f} ms"
            print(f"echo: {reply.decode()}  (heartbeat rtt {rtt_text})", flush=True)
            await asyncio.sleep(pause)
    except pulsewire.PeerDeadError as error:
        print(f"server is gone: {error.death.describe()}", flush=True)
        return 1
    await connection.close()
    return 0


if __name__ == "__main__":
    # pulsewire logs through `logging` (logger "pulsewire"); the application decides where
    # its events go: here every event from INFO up, on stderr.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    sys.exit(asyncio.run(main(port, count, pause)))
