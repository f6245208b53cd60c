"""Sender-local drops, and the kernel backstop that must never decide first.

A host firewall, a rate limit or a full conntrack table can drop a host's *own* outgoing
packets: the sending TCP sees a failed transmit (EPERM), not loss on the wire, and takes a
different path through the kernel (the zero-window probe timer). There, Linux checks
``TCP_USER_TIMEOUT`` against a probe timestamp that can be left over from an earlier
episode, so a live connection is aborted with ETIMEDOUT whatever the user timeout
(measured for docs/tuning.md: at 10 % local drops each way, 20 of 20 connections died
within 10 minutes with 3 s, 12 of 20 with 12 s, none without). pulsewire therefore leaves
``TCP_USER_TIMEOUT`` unset by default and caps the retransmission timeout instead
(``TCP_RTO_MAX_MS``), which bounds unacknowledged data without that timestamp.
"""

from __future__ import annotations

import time

import pytest
from lab.endpoints import Endpoint, serve_and_watch

from pulsewire import Policy, Reason, Source
from pulsewire.cli.netns import TwoHosts
from pulsewire.kernel import linux_retransmission_timeout

from .helpers import LATE, settle

#: Local drops each way, percent; connections and seconds: one connection-hour in all.
DROP = 10
CONNECTIONS = 60
SECONDS = 60.0


def test_sender_local_drops_kill_no_live_connection(hosts: TwoHosts) -> None:
    endpoints = [Endpoint(name="default", kind="pulsewire", connections=CONNECTIONS)]
    running = serve_and_watch(hosts, endpoints)
    settle()
    hosts.drop_outgoing(DROP)
    started = time.monotonic()
    time.sleep(SECONDS)  # the test is the absence of an event: nothing to wait for
    hosts.drop_outgoing(0)
    hours = CONNECTIONS * (time.monotonic() - started) / 3600
    running.observer.send({"cmd": "stats", "id": 1})
    rows = running.observer.wait_for("stats", 10)[0]["connections"]
    deaths = running.observer.messages("dead") + running.peer.messages("dead")
    retransmits = sum(row["tcp_retransmits"] for row in rows)
    print(
        f"\n{DROP} % local drops each way, {hours:.2f} connection-hours of Policy() with the "
        f"default socket options: {len(deaths)} deaths, {retransmits} TCP retransmissions"
    )
    assert deaths == [], f"false deaths under local drops: {deaths}"
    assert retransmits > 0  # the drops were real
    assert all(row["alive"] for row in rows)


def test_data_to_a_vanished_peer_is_given_up_by_the_kernel_when_the_heartbeat_does_not(
    hosts: TwoHosts,
) -> None:
    # A heartbeat that would take two minutes to convict stands in for one that is not
    # running (a blocked event loop): the kernel alone must give up the writes.
    patient = Policy(interval=30.0, timeout=120.0)
    endpoint = Endpoint(name="writer", kind="pulsewire", policy=patient, write_every=0.1)
    running = serve_and_watch(hosts, [endpoint])
    ready = running.observer.messages("ready")[0]
    if ready["connections"][0]["rto_max_ms"] is None:
        pytest.skip("this kernel has no TCP_RTO_MAX_MS (Linux 6.15 and later)")
    assert ready["connections"][0]["rto_max_ms"] == 1000  # the default SocketOptions
    settle()
    hosts.blackhole()
    fault_at = time.monotonic()
    bound = linux_retransmission_timeout(15, rto_max=1.0)  # the default rto_max, retries2
    running.observer.wait_for("dead", bound + 10)
    (death,) = running.deaths()["writer"]
    detected = death["at"] - fault_at
    print(f"\nblackhole while writing, heartbeat patient: kernel gave up after {detected:.2f} s")
    assert (death["reason"], death["source"]) == (Reason.TIMEOUT.value, Source.KERNEL.value)
    assert bound - 1.0 <= detected <= bound + 1.0 + LATE
