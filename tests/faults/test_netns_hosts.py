"""The two-host builder: what it builds, that faults apply, and that teardown always runs."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from pulsewire.cli.netns import (
    INTERFACE,
    HostProcess,
    NetnsError,
    TwoHosts,
    netns_available,
    remove_stale_namespaces,
)

BENCHMARK_RANGE = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544


def namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listing.stdout.splitlines() if line}


def root_links() -> set[str]:
    listing = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True)
    return {link["ifname"] for link in json.loads(listing.stdout)}


@pytest.fixture
def usable() -> None:
    reason = netns_available()
    if reason is not None:
        pytest.skip(reason)


def test_hosts_are_two_namespaces_on_one_private_wire(hosts: TwoHosts) -> None:
    pid = str(os.getpid())
    assert {hosts.a.namespace, hosts.b.namespace} <= namespaces()
    for host in (hosts.a, hosts.b):
        assert f"-{pid}-" in host.namespace
        assert ipaddress.ip_address(host.address) in BENCHMARK_RANGE
        links = {link["ifname"]: link for link in json.loads(hosts.run(host, "ip", "-j", "link"))}
        assert set(links) == {"lo", INTERFACE}
        assert "UP" in links["lo"]["flags"]
        # Nothing can leave the two hosts: the only route is the wire's own /24.
        routes = json.loads(hosts.run(host, "ip", "-j", "route"))
        assert [route["dst"] for route in routes] == [
            str(ipaddress.ip_network(f"{host.address}/24", strict=False))
        ]
    assert INTERFACE not in root_links()


SERVER = """
import json, socket, sys
server = socket.create_server((sys.argv[1], 0))
print(json.dumps({"event": "ready", "port": server.getsockname()[1]}), flush=True)
connection, (peer, _) = server.accept()
print(json.dumps({"event": "accepted", "peer": peer}), flush=True)
connection.recv(1)
"""


def test_processes_run_inside_a_host_and_reach_the_other(hosts: TwoHosts) -> None:
    server = hosts.spawn(hosts.b, sys.executable, "-c", SERVER, hosts.b.address)
    port = server.wait_for("ready", 15)[0]["port"]
    client = hosts.spawn(
        hosts.a,
        sys.executable,
        "-c",
        f"import socket, time; socket.create_connection(({hosts.b.address!r}, {port})); "
        "time.sleep(60)",
    )
    assert server.wait_for("accepted", 15)[0]["peer"] == hosts.a.address
    assert client.returncode is None  # still running: killed by the teardown


def fail_with_a_stopped_process_inside(started: list[HostProcess]) -> None:
    with TwoHosts() as hosts:
        sleeper = hosts.spawn(hosts.b, sys.executable, "-c", "import time; time.sleep(60)")
        started.append(sleeper)
        sleeper.freeze()
        hosts.blackhole()
        raise RuntimeError("the test failed")


def test_teardown_runs_when_the_test_fails(usable: None) -> None:
    before_namespaces, before_links = namespaces(), root_links()
    started: list[HostProcess] = []
    with pytest.raises(RuntimeError, match="the test failed"):
        fail_with_a_stopped_process_inside(started)
    assert started[0].returncode is not None  # killed (by its PID), though it was stopped
    assert namespaces() == before_namespaces
    assert root_links() == before_links


def test_a_failed_build_leaves_nothing_behind(usable: None) -> None:
    before = namespaces()
    with pytest.raises(NetnsError):
        TwoHosts(subnet=7, prefix="pulsewire-bad/name").start()  # not a valid netns name
    assert namespaces() == before


def test_reboot_gives_host_b_a_fresh_stack_on_the_same_address(hosts: TwoHosts) -> None:
    old = hosts.b
    sleeper = hosts.spawn(old, sys.executable, "-c", "import time; time.sleep(60)")
    hosts.firewall(old, 30)
    new = hosts.reboot()
    assert (new.address, new.mac) == (old.address, old.mac)
    assert new.namespace != old.namespace
    assert old.namespace not in namespaces()
    assert sleeper.returncode is not None  # a reboot ends every process of the host
    assert hosts.run(new, "nft", "list", "ruleset").strip() == ""  # its firewall is gone
    addresses = json.loads(hosts.run(new, "ip", "-j", "addr", "show", INTERFACE))
    assert addresses[0]["addr_info"][0]["local"] == old.address


def test_firewall_timeout_is_set_inside_the_namespace_only(hosts: TwoHosts) -> None:
    key = "net.netfilter.nf_conntrack_tcp_timeout_established"
    with open("/proc/sys/" + key.replace(".", "/")) as ours:
        before = ours.read().strip()
    hosts.firewall(hosts.b, 7)
    assert hosts.run(hosts.b, "sysctl", "-n", key).strip() == "7"
    with open("/proc/sys/" + key.replace(".", "/")) as ours:
        assert ours.read().strip() == before
    rules = hosts.run(hosts.b, "nft", "list", "table", "inet", "pulsewire_firewall")
    assert "ct state established,related accept" in rules
    assert "ct state new drop" in rules


def test_faults_are_installed_on_both_hosts_and_loss_is_removed(hosts: TwoHosts) -> None:
    hosts.blackhole()
    hosts.lose(10)
    for host in (hosts.a, hosts.b):
        rules = hosts.run(host, "nft", "list", "ruleset")
        assert f"ip saddr {hosts.other(host).address} drop" in rules
        assert "numgen random mod 100 < 10 drop" in rules
    hosts.lose(0)
    for host in (hosts.a, hosts.b):
        rules = hosts.run(host, "nft", "list", "ruleset")
        assert "numgen" not in rules
        assert f"ip saddr {hosts.other(host).address} drop" in rules  # the blackhole stays


def test_stale_namespaces_of_dead_owners_are_removed(usable: None) -> None:
    dead_pid = 2**22 + 1  # above the largest PID Linux hands out (pid_max <= 2**22)
    name = f"pulsewire-{dead_pid}-1-a"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in remove_stale_namespaces()
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
    assert name not in namespaces()
