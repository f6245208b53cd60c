"""Links that are bad but alive: random loss, and a stateful firewall that forgets idle flows.

No peer dies here: a verdict would be a false death. The lossy link runs several
connections per policy in parallel for more samples, and prints what they went through
(pings, RTT percentiles, TCP retransmissions); the firewall test shows what a heartbeat
is for besides detection: keeping a middlebox's state alive.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from lab.endpoints import Endpoint, serve_and_watch

from pulsewire import Policy
from pulsewire.cli.netns import TwoHosts

from .helpers import set_congestion, settle

#: Loss each way, percent, and for how long.
LOSS = 10
LOSSY_SECONDS = 30.0
CONNECTIONS = 10  # per policy
LOSSY_POLICIES = {"default": Policy(), "wan": Policy.wan()}

#: The firewall forgets a flow idle for this many seconds; each idle period is longer.
CONNTRACK_TIMEOUT = 5
IDLE = CONNTRACK_TIMEOUT + 1.5
ROUNDS = 3  # idle periods survived, each followed by a request and its answer


def echo(observer: Any, probe_id: int, within: float) -> dict[str, dict[str, Any]]:
    """Send a probe on every connection; the results by endpoint name (one connection each)."""
    observer.send({"cmd": "echo", "id": probe_id, "timeout": within})
    answer = observer.wait_for("echoed", within + 5, where=lambda m: m["id"] == probe_id)[0]
    return {result["endpoint"]: result for result in answer["results"]}


def test_lossy_link_causes_no_false_deaths(hosts: TwoHosts) -> None:
    # The default policy's 3 s timeout survives 10 % loss because a lost PING or PONG is
    # retransmitted every 0.2 s (linear timeouts), which needs a congestion control that
    # sets a slow-start threshold: reno here (cubic is not allowed in a namespace). Under
    # BBR, where retransmissions back off exponentially, it convicted about one live
    # connection in five connection-hours (docs/tuning.md): a 1-2 % chance per run here.
    set_congestion(hosts, "reno")
    endpoints = [
        Endpoint(name=name, kind="pulsewire", policy=policy, connections=CONNECTIONS)
        for name, policy in LOSSY_POLICIES.items()
    ]
    running = serve_and_watch(hosts, endpoints)
    settle()
    hosts.lose(LOSS)
    started = time.monotonic()
    time.sleep(LOSSY_SECONDS)  # the test is the absence of an event: nothing to wait for
    hosts.lose(0)
    lossy_for = time.monotonic() - started
    running.observer.send({"cmd": "stats", "id": 1})
    rows = running.observer.wait_for("stats", 10)[0]["connections"]
    deaths = running.observer.messages("dead") + running.peer.messages("dead")

    print(f"\n{LOSS} % loss each way for {lossy_for:.1f} s, {CONNECTIONS} connections per policy")
    for name in LOSSY_POLICIES:
        mine = [row for row in rows if row["endpoint"] == name]
        alive = [row for row in mine if row["alive"]]
        p50s = [row["rtt_p50"] for row in alive if row.get("rtt_p50") is not None]
        p99s = [row["rtt_p99"] for row in alive if row.get("rtt_p99") is not None]
        print(
            f"{name}: {len(alive)}/{len(mine)} alive, "
            f"{sum(row['pings_sent'] for row in alive)} pings sent, "
            f"{sum(row['pongs_received'] for row in alive)} pongs received, "
            f"RTT p50 {statistics.median(p50s) * 1000:.1f} ms (median over connections), "
            f"p99 {max(p99s) * 1000:.0f} ms, max {max(row['rtt_max'] for row in alive):.3f} s "
            f"(worst connection), {sum(row['tcp_retransmits'] for row in alive)} TCP "
            f"retransmissions, timeout in force {sorted({row['timeout'] for row in alive})} s"
        )
    assert deaths == [], f"false deaths on a live lossy link: {deaths}"
    assert all(row["alive"] for row in rows)
    # The loss was real: TCP had to retransmit on every policy's connections.
    for name in LOSSY_POLICIES:
        assert sum(r["tcp_retransmits"] for r in rows if r["endpoint"] == name) > 0
    # And every connection still carries messages both ways.
    answers = echo(running.observer, 1, 5.0)
    assert all(answer["ok"] for answer in answers.values()), answers


def test_heartbeats_keep_a_stateful_firewall_from_forgetting_the_flow(hosts: TwoHosts) -> None:
    # Host b sits behind a firewall that forgets flows idle for CONNTRACK_TIMEOUT s and
    # then drops every packet of them that is not a SYN, both ways. It must be there
    # before the connections open, to track them.
    hosts.firewall(hosts.b, CONNTRACK_TIMEOUT)
    nat = Policy.nat(idle_timeout=CONNTRACK_TIMEOUT)
    endpoints = [
        Endpoint(name="pulsewire", kind="pulsewire", policy=nat),
        # Plain TCP, no keepalive; TCP_USER_TIMEOUT only makes the kernel give up (and
        # report it) 2 s after a write that is never acknowledged.
        Endpoint(name="plain", kind="tcp", user_timeout=2.0),
    ]
    running = serve_and_watch(hosts, endpoints)
    answers = echo(running.observer, 0, 3.0)
    assert answers["pulsewire"]["ok"], answers
    assert answers["plain"]["ok"], answers

    print(f"\nfirewall forgets idle flows after {CONNTRACK_TIMEOUT} s; {nat.describe()}")
    for probe_id in range(1, ROUNDS + 1):
        time.sleep(IDLE)  # idle longer than the firewall's memory: that is the test
        answers = echo(running.observer, probe_id, 3.0)
        print(f"after {IDLE} s idle (round {probe_id}): " + ", ".join(
            f"{name} {'answered' if a['ok'] else 'failed: ' + a['why']}"
            for name, a in answers.items()
        ))  # fmt: skip
        assert answers["pulsewire"]["ok"], answers
        assert not answers["plain"]["ok"], answers

    # The peer prints its report of a request before it echoes it, but a thread of ours
    # reads that report from its stdout and may get it after the echo: wait for the last.
    last = f"E{ROUNDS}:pulsewire:0"
    running.peer.wait_for("received", 5.0, where=lambda m: m["payload"] == last)
    received = {m["payload"] for m in running.peer.messages("received")}
    # The plain connection's requests after the first idle period never reached the peer...
    assert "E0:plain:0" in received
    assert not any(p.startswith("E") and p.endswith(":plain:0") for p in received - {"E0:plain:0"})
    # ... and its kernel gave up on them: the connection is dead. pulsewire's is not.
    deaths = running.deaths()
    assert [(d["reason"], d["source"]) for d in deaths.get("plain", [])] == [("timeout", "kernel")]
    assert "pulsewire" not in deaths
    assert {f"E{i}:pulsewire:0" for i in range(ROUNDS + 1)} <= received
