"""Linear retransmission timeouts on a real wire: what ``TCP_THIN_LINEAR_TIMEOUTS`` changes.

A blackhole makes the next PING go unacknowledged; the observer's kernel then retransmits
it. With linear timeouts (``SocketOptions.linear_timeouts``, on by default) the first
retransmissions are one RTO (0.2 s here) apart, without them they double (0.2, 0.4, 0.8,
1.6 s ...). The count of retransmissions a few seconds into the blackhole tells them
apart. Linux only counts a stream as thin once its congestion control has set a
slow-start threshold: reno and cubic do, BBR never does, so under BBR the option alone
changes nothing (and the kernel report says why); ``SocketOptions(congestion="reno")``
(opt-in) switches a BBR socket to reno, and the linear timeouts apply again.
"""

from __future__ import annotations

import time
from typing import Any

from lab.endpoints import Endpoint, serve_and_watch

from pulsewire import Policy, SocketOptions
from pulsewire.cli.netns import TwoHosts

from .helpers import set_congestion, settle

#: Long enough that no verdict comes while the retransmissions are counted.
POLICY = Policy(interval=1.0, timeout=8.0)
#: Counted this long after the fault: the first unacknowledged PING leaves within one
#: interval, so at least 2.5 s of retransmissions are seen.
WATCH = 3.5


#: Linear timeouts, the socket switched to reno if it is BBR (opt-in).
SWITCH = SocketOptions(congestion="reno")
#: Linear timeouts asked for, congestion control left alone (the default).
LINEAR = SocketOptions()
#: No linear timeouts at all.
BACKOFF = SocketOptions(linear_timeouts=False)


def retransmissions_into_a_blackhole(
    hosts: TwoHosts, options: dict[str, SocketOptions]
) -> dict[str, dict[str, Any]]:
    endpoints = [
        Endpoint(name=name, kind="pulsewire", policy=POLICY, socket_options=each)
        for name, each in options.items()
    ]
    running = serve_and_watch(hosts, endpoints)
    settle()
    before = stats(running.observer, 1)
    hosts.blackhole()
    time.sleep(WATCH)
    after = stats(running.observer, 2)
    assert running.observer.messages("dead") == []
    for name, row in after.items():
        row["retransmitted"] = row["tcp_retransmits"] - before[name]["tcp_retransmits"]
    return after


def stats(observer: Any, command_id: int) -> dict[str, dict[str, Any]]:
    observer.send({"cmd": "stats", "id": command_id})
    rows = observer.wait_for("stats", 10, where=lambda m: m["id"] == command_id)[0]
    return {row["endpoint"]: row for row in rows["connections"]}


def test_linear_timeouts_retransmit_a_lost_ping_without_backing_off(hosts: TwoHosts) -> None:
    set_congestion(hosts, "reno")
    rows = retransmissions_into_a_blackhole(hosts, {"linear": LINEAR, "backoff": BACKOFF})
    linear, backoff = rows["linear"], rows["backoff"]
    print(
        f"\nreno, {WATCH} s into a blackhole: {linear['retransmitted']} retransmissions with "
        f"linear timeouts, {backoff['retransmitted']} without"
    )
    assert (linear["congestion"], linear["linear_timeouts"]) == ("reno", 1)
    assert backoff["linear_timeouts"] == 0
    # Linear: every 0.2 s for the first seven, so at least 8 in the 2.5 s after the first
    # send. Doubling: 0.2, 0.4, 0.8, 1.7 s after it, the next at 3.3 s: at most 5.
    assert linear["retransmitted"] >= 8, rows
    assert backoff["retransmitted"] <= 5, rows


def test_under_bbr_linear_timeouts_work_once_the_socket_is_switched_to_reno(
    hosts: TwoHosts,
) -> None:
    set_congestion(hosts, "bbr")
    options = {"switched": SWITCH, "kept": LINEAR, "backoff": BACKOFF}
    rows = retransmissions_into_a_blackhole(hosts, options)
    switched, kept, backoff = rows["switched"], rows["kept"], rows["backoff"]
    print(
        f"\nbbr hosts, {WATCH} s into a blackhole: {switched['retransmitted']} retransmissions "
        f"with linear timeouts (switched to {switched['congestion']}), {kept['retransmitted']} "
        f"with linear timeouts under bbr, {backoff['retransmitted']} without"
    )
    # SocketOptions(congestion="reno") switched its socket: linear timeouts apply.
    assert (switched["congestion"], switched["linear_timeouts"]) == ("reno", 1)
    assert switched["retransmitted"] >= 8, rows
    # The default keeps BBR, where the option changes nothing.
    assert (kept["congestion"], kept["linear_timeouts"]) == ("bbr", 1)
    assert kept["retransmitted"] <= 5, rows
    assert (backoff["congestion"], backoff["linear_timeouts"]) == ("bbr", 0)
    assert backoff["retransmitted"] <= 5, rows
