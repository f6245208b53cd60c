"""No silent loss: whatever happens to the peer, every message passed to send() is accounted for.

A sender streams numbered messages as fast as it can to a receiver process that writes the
number of each message its application takes straight to a pipe. The receiver is killed
(SIGKILL) or frozen (SIGSTOP) mid-stream. Then the sender's ``Death`` must account for
every message passed to ``send()``: the ones it reports delivered the receiver did take,
the ones it hands back as unsent the receiver never saw, and the two with the ones in doubt
add up to all of them.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

import pulsewire
from pulsewire import Reason

SIZE = 100
POLICY = pulsewire.Policy(interval=0.2, timeout=1.0)


def numbered(index: int) -> bytes:
    return index.to_bytes(8, "big") + bytes(SIZE - 8)


async def stream_until_dead(connection: pulsewire.Connection) -> int:
    """Send numbered messages back to back until the connection dies; return how many
    ``send()`` calls returned."""
    returned = 0
    try:
        for index in itertools.count():
            await connection.send(numbered(index))
            returned += 1
    except pulsewire.PeerDeadError:
        return returned
    raise AssertionError("unreachable")  # pragma: no cover


async def got_numbers(peer, numbers: list[int]) -> None:
    """Collect every ``GOT n`` line the receiver writes, to the end of its output (read as
    it goes: a full pipe would stop the receiver's loop)."""
    while True:
        try:
            line = await peer.readline(within=60.0)
        except EOFError:
            return
        word, number = line.split()
        assert word == "GOT"
        numbers.append(int(number))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "after"),
    [("kill", 0.3), ("kill", 0.8), ("kill", 1.5), ("freeze", 0.5)],
    ids=["kill-0.3s", "kill-0.8s", "kill-1.5s", "freeze-0.5s"],
)
async def test_a_peer_lost_mid_stream_loses_no_message_silently(spawn_peer, fault, after):
    receiver = await spawn_peer("server", "--numbered")
    port = int(receiver.ready[0])
    got: list[int] = []
    reading = asyncio.create_task(got_numbers(receiver, got))
    connection = await pulsewire.connect("127.0.0.1", port, policy=POLICY)
    streaming = asyncio.create_task(stream_until_dead(connection))
    await asyncio.sleep(after)  # the stream runs: this is the moment of the fault
    faulted_at = time.monotonic()
    receiver.kill() if fault == "kill" else receiver.freeze()
    async with asyncio.timeout(POLICY.timeout + 5):
        returned = await streaming
    death = connection.death
    assert death is not None
    detected = time.monotonic() - faulted_at
    receiver.kill()  # a frozen one too, now: its output ends
    async with asyncio.timeout(10):
        await reading

    taken = death.messages_sent - returned  # the call that raised may have taken its message
    written = death.unsent_range.start
    print(
        f"\n{fault} after {after} s: {death.reason.value} in {detected:.3f} s; "
        f"{death.messages_sent} passed to send(): {death.delivered} delivered (the peer's "
        f"last report), {len(death.in_doubt)} in doubt, {len(death.unsent)} unsent; the "
        f"receiver's application took {len(got)}"
    )
    assert death.reason is (Reason.RESET if fault == "kill" else Reason.TIMEOUT)
    assert taken in (0, 1)
    # Every message passed to send() is in exactly one of the three, in order.
    assert death.delivered + len(death.in_doubt) + len(death.unsent) == death.messages_sent
    # The receiver took messages in order, starting at 0 ...
    assert got == list(range(len(got)))
    # ... at least as many as the sender was told, none that it reports never sent ...
    assert death.delivered <= len(got) <= written
    # ... and the unsent ones are handed back byte for byte, for sending again.
    assert death.unsent == tuple(numbered(index) for index in death.unsent_range)
    assert death.delivered > 0  # the receiver's reports did arrive (CREDIT, PONG)


class SlowConsumer(pulsewire.Server):
    """Takes one message every 10 ms: a close with thousands queued cannot finish."""

    async def on_message(self, connection: pulsewire.Connection, message: bytes) -> None:
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_close_that_cannot_deliver_in_time_raises_with_what_it_did_not_deliver():
    policy = pulsewire.Policy(interval=0.2, timeout=1.0, close_timeout=1.0)
    limits = pulsewire.Limits(max_message_size=64 * 1024)  # a small window: it fills
    async with await pulsewire.serve(SlowConsumer(), limits=limits) as listener:
        connection = await pulsewire.connect(
            "127.0.0.1", listener.port, policy=policy, limits=limits
        )
        for index in range(6000):
            await connection.send(numbered(index))
        started = time.monotonic()
        with pytest.raises(pulsewire.LocalClosedError) as raised:
            await connection.close()
        took = time.monotonic() - started
    death = raised.value.death
    print(f"\nclose() raised after {took:.2f} s: {raised.value}")
    assert death.reason is Reason.LOCAL_CLOSE
    assert isinstance(death.error, TimeoutError)  # the peer never answered our CLOSE
    assert death.messages_sent == 6000
    assert death.delivered + len(death.in_doubt) + len(death.unsent) == 6000
    assert len(death.unsent) > 1000  # most never left: the window was full
    assert death.unsent == tuple(numbered(index) for index in death.unsent_range)
    assert "never sent (death.unsent)" in str(raised.value)
    assert took <= policy.effective_close_timeout + 0.5


@pytest.mark.asyncio
async def test_close_that_delivers_everything_returns_the_death(accepting):
    async with await pulsewire.serve(accepting) as listener:
        connection = await pulsewire.connect("127.0.0.1", listener.port)
        served = await accepting.next()
        for index in range(1000):
            assert await connection.send(numbered(index)) == index
        death = await connection.close()
        received = [await served.recv() for _ in range(1000)]
    assert death.clean
    assert (death.messages_sent, death.delivered, death.undelivered) == (1000, 1000, 0)
    assert received == [numbered(index) for index in range(1000)]
