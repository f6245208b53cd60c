"""Real network faults between two hosts, and how (and how fast) pulsewire detects each.

Host a runs the observer, host b the peer (both ``benchmarks/lab/endpoints.py``
processes). Each test injects one fault, waits for the observer's verdict and checks its
reason and its time against the policy's bound. Times are measured from the fault, and,
for timeouts, from the last evidence of life (``silence``), which is what the policy
bounds: a verdict may come ``LATE`` (scheduling), never meaningfully early.
"""

from __future__ import annotations

import time

from lab.endpoints import Endpoint, serve_and_watch

from pulsewire import Policy, Reason, SocketOptions, Source
from pulsewire.cli.netns import TwoHosts

from .helpers import EARLY, LATE, PROMPT, only, report, settle

#: Linux's minimum retransmission timeout (TCP_RTO_MIN), the RTO on a sub-millisecond link.
RTO_MIN = 0.2

LAN = Policy.lan()
DEFAULT = Policy()
POLICIES = {"lan": LAN, "default": DEFAULT}


def pulsewire_endpoints(write_every: float | None = None) -> list[Endpoint]:
    return [
        Endpoint(name=name, kind="pulsewire", policy=policy, write_every=write_every)
        for name, policy in POLICIES.items()
    ]


def assert_timeout_within_bound(
    name: str, death: dict[str, object], policy: Policy, fault_at: float
) -> None:
    assert death["reason"] == Reason.TIMEOUT.value, death
    silence = death["silence"]
    assert isinstance(silence, float)
    assert policy.timeout - EARLY <= silence <= policy.timeout + LATE, (name, death)
    detected = float(death["at"]) - fault_at  # type: ignore[arg-type]
    assert 0 < detected <= policy.timeout + LATE, (name, detected)


def test_idle_blackhole_is_a_timeout_within_the_policy_bound(hosts: TwoHosts) -> None:
    running = serve_and_watch(hosts, pulsewire_endpoints())
    settle()
    hosts.blackhole()  # the cable is pulled: both ways, silently
    fault_at = time.monotonic()
    running.observer.wait_for("dead", DEFAULT.timeout + 5, count=len(POLICIES))
    deaths = running.deaths()
    print()
    for name, policy in POLICIES.items():
        death = only(deaths, name)
        print(report(f"idle blackhole, {name} (timeout {policy.timeout} s)", death, fault_at))
        assert_timeout_within_bound(name, death, policy, fault_at)
        # The heartbeat's deadline runs from the last evidence; TCP_USER_TIMEOUT (= timeout)
        # from the first unacknowledged PING or PONG, which is later. Either is a TIMEOUT.
        assert death["source"] in (Source.HEARTBEAT.value, Source.KERNEL.value)


def test_blackhole_while_writing_is_a_timeout_within_the_policy_bound(hosts: TwoHosts) -> None:
    # Every 100 ms the observer sends a message (the peer echoes it): the retransmission
    # path, where kernel keepalive never runs and TCP_USER_TIMEOUT (= timeout) does.
    running = serve_and_watch(hosts, pulsewire_endpoints(write_every=0.1))
    settle()
    hosts.blackhole()
    fault_at = time.monotonic()
    running.observer.wait_for("dead", DEFAULT.timeout + 5, count=len(POLICIES))
    deaths = running.deaths()
    print()
    for name, policy in POLICIES.items():
        death = only(deaths, name)
        print(
            report(f"blackhole while writing, {name}", death, fault_at)
            + f"; first to fire: {death['source']}"
        )
        assert_timeout_within_bound(name, death, policy, fault_at)
        assert death["source"] in (Source.HEARTBEAT.value, Source.KERNEL.value)


def test_kernel_user_timeout_is_reported_as_a_timeout_from_the_kernel(hosts: TwoHosts) -> None:
    # The application timeout (8 s) is longer than the kernel's TCP_USER_TIMEOUT (2 s): the
    # kernel gives up on the unacknowledged writes first, with ETIMEDOUT, which the driver
    # must map to DEAD(TIMEOUT) from the kernel (not RESET, not a heartbeat verdict).
    user_timeout = 2.0
    policy = Policy(interval=1.0, timeout=8.0)
    endpoint = Endpoint(
        name="uto",
        kind="pulsewire",
        policy=policy,
        socket_options=SocketOptions(user_timeout=user_timeout),
        write_every=0.1,
    )
    running = serve_and_watch(hosts, [endpoint])
    ready = running.observer.messages("ready")[0]
    assert ready["connections"][0]["user_timeout_ms"] == 2000  # as read back by getsockopt
    settle()
    hosts.blackhole()
    fault_at = time.monotonic()
    running.observer.wait_for("dead", policy.timeout + 5)
    death = only(running.deaths(), "uto")
    print("\n" + report(f"TCP_USER_TIMEOUT {user_timeout} s, app timeout 8 s", death, fault_at))
    assert (death["reason"], death["source"]) == (Reason.TIMEOUT.value, Source.KERNEL.value)
    assert "timed out" in death["detail"]  # ETIMEDOUT behind the verdict
    # Linux counts the user timeout from the first retransmission of the first
    # unacknowledged write: that write goes out within 100 ms of the fault, and its first
    # retransmission one RTO later (200 ms, the minimum, on this sub-millisecond link).
    detected = death["at"] - fault_at
    assert user_timeout - EARLY <= detected <= user_timeout + 0.1 + RTO_MIN + LATE
    assert death["silence"] < policy.timeout


def test_frozen_peer_is_a_heartbeat_timeout(hosts: TwoHosts) -> None:
    running = serve_and_watch(hosts, pulsewire_endpoints())
    settle()
    running.peer.freeze()  # SIGSTOP: its kernel still ACKs, its event loop answers nothing
    fault_at = time.monotonic()
    running.observer.wait_for("dead", DEFAULT.timeout + 5, count=len(POLICIES))
    deaths = running.deaths()
    print()
    for name, policy in POLICIES.items():
        death = only(deaths, name)
        print(report(f"frozen peer, {name}", death, fault_at))
        assert_timeout_within_bound(name, death, policy, fault_at)
        # Every byte was ACKed by the peer's kernel: only the heartbeat can tell.
        assert death["source"] == Source.HEARTBEAT.value


def test_crash_and_reboot_is_a_reset(hosts: TwoHosts) -> None:
    running = serve_and_watch(hosts, pulsewire_endpoints())
    settle()
    crash_at = time.monotonic()
    # The peer's host loses its network at once (no FIN or RST gets out), its processes
    # die, and it comes back on the same address knowing nothing of the connection: the
    # next segment the observer sends (a PING, or the retransmission of one) draws a RST.
    hosts.reboot()
    back_at = time.monotonic()
    running.observer.wait_for("dead", DEFAULT.interval + 5, count=len(POLICIES))
    deaths = running.deaths()
    print(f"\nreboot took {back_at - crash_at:.3f} s")
    for name, policy in POLICIES.items():
        death = only(deaths, name)
        print(report(f"crash and reboot, {name}", death, crash_at))
        assert (death["reason"], death["source"]) == (Reason.RESET.value, Source.KERNEL.value)
        # The next PING goes out within one interval of the last evidence; a PING lost
        # in the reboot is retransmitted after an RTO (0.2 s, then 0.4 s, doubling).
        assert death["at"] - crash_at <= policy.interval + 3 * RTO_MIN + LATE
        assert death["silence"] < policy.timeout


def test_graceful_exit_is_an_eof(hosts: TwoHosts) -> None:
    running = serve_and_watch(hosts, pulsewire_endpoints())
    settle()
    running.peer.terminate()  # the process exits without closing: its kernel sends FIN
    fault_at = time.monotonic()
    running.observer.wait_for("dead", 5, count=len(POLICIES))
    deaths = running.deaths()
    print()
    for name in POLICIES:
        death = only(deaths, name)
        print(report(f"graceful exit, {name}", death, fault_at))
        assert (death["reason"], death["source"]) == (Reason.EOF.value, Source.KERNEL.value)
        assert death["at"] - fault_at < PROMPT
