"""Two hosts on one wire: the CLI's and the test lab's private network-namespace helper.

Not public API, and re-exported nowhere (Linux, root only). Its users are
``pulsewire demo --netns`` (:mod:`pulsewire.cli.demo_netns`) and the fault lab that
``tests/faults`` and ``benchmarks/detection.py`` share (``benchmarks/lab/endpoints.py``).

Loopback never loses a packet. To see what a pulled cable, a powered-off host, a crashed and
rebooted host, a lossy link or a stateful firewall that forgets idle flows do to a TCP
connection, a test needs two network stacks and a wire between them that it can cut.
:class:`TwoHosts` builds that (Linux, root only; :func:`netns_available` says whether it
can, and if not, why)::

    with TwoHosts() as hosts:
        peer = hosts.spawn(hosts.b, sys.executable, "-m", "my_peer", hosts.b.address)
        observer = hosts.spawn(hosts.a, sys.executable, "-m", "my_observer", hosts.b.address)
        hosts.blackhole()  # the cable is cut: every packet between the hosts is dropped
        observer.wait_for("dead", within=10)

What it builds:

- two network namespaces, ``pulsewire-<pid>-<n>-a`` and ``pulsewire-<pid>-<n>-b``: the PID
  names the process that owns them, so that leftovers of a run that was killed can be told
  from the namespaces of a run still going (:func:`remove_stale_namespaces`);
- a veth pair created directly inside them (``veth0`` on both sides: no interface ever
  appears in the caller's namespace), with addresses from the RFC 2544 benchmarking range
  ``198.18.0.0/15`` (``198.18.<k>.1/24`` on host a, ``198.18.<k>.2/24`` on host b), ``lo``
  up, no default route (nothing can leave the two hosts), and static neighbour entries on
  both sides, so that neither a blackhole nor a reboot ever turns into an ARP failure
  ("host unreachable") instead of the silence being tested;
- faults, each an nftables table installed or removed atomically inside the namespaces
  (:meth:`~TwoHosts.blackhole`, :meth:`~TwoHosts.lose`, :meth:`~TwoHosts.firewall`), and
  :meth:`~TwoHosts.reboot`, which gives host b a fresh network stack on the same wire and
  address;
- processes started inside a namespace with ``ip netns exec`` (which execs the command, so
  the PID is the command's own): :meth:`~TwoHosts.spawn` returns a :class:`HostProcess`
  that collects the JSON lines the process prints and can be signalled by its PID.

The blackhole and the loss act on *arrival* (the ``prerouting`` hook of the receiving
host), never by failing a local send: a sender sees what it would see on a real network,
silence, not ``EPERM``. The firewall is the one exception: it filters host b's own
``input`` and ``output``, so a packet that host b itself sends on a forgotten flow is
refused locally (its TCP retries; the other host sees the same silence as behind a real
middlebox).

Teardown always runs when :class:`TwoHosts` is used as a context manager, whatever the
test did: every process spawned is continued and killed by its PID, any process still
inside the namespaces (only descendants of those can be there) is killed by its PID, and
the namespaces are deleted, which destroys the veth pair with them.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Final, final

__all__ = [
    "Host",
    "HostProcess",
    "NetnsError",
    "ProcessEndedError",
    "TwoHosts",
    "netns_available",
    "remove_stale_namespaces",
]

#: Namespace names start with this (then ``-<pid>-<n>-a`` / ``-b``).
DEFAULT_PREFIX: Final = "pulsewire"
#: The interface name on both sides of the wire.
INTERFACE: Final = "veth0"
#: Every command this module runs is bounded by this many seconds.
COMMAND_TIMEOUT: Final = 15.0

# nftables tables, one per kind of fault, so that each can be removed on its own.
_BLACKHOLE_TABLE: Final = "pulsewire_blackhole"
_LOSS_TABLE: Final = "pulsewire_loss"
_LOCAL_DROP_TABLE: Final = "pulsewire_local_drop"
_FIREWALL_TABLE: Final = "pulsewire_firewall"
_CONNTRACK_TIMEOUT: Final = "net/netfilter/nf_conntrack_tcp_timeout_established"

_serial = itertools.count(1)


class NetnsError(RuntimeError):
    """A command that builds, changes or tears down the hosts failed."""


class ProcessEndedError(NetnsError):
    """A :class:`HostProcess` ended its output before printing what was waited for."""


@dataclass(frozen=True, slots=True)
class Host:
    """One end of the wire: a network namespace, its address and its MAC."""

    label: str  #: ``"a"`` or ``"b"``
    namespace: str  #: the network namespace's name (``ip netns``)
    address: str  #: IPv4 address on ``veth0``
    mac: str  #: MAC address of ``veth0``


# ------------------------------------------------------------------------- commands


def _run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run ``argv``; return its stdout, or raise :class:`NetnsError` with its stderr."""
    try:
        result = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NetnsError(f"{' '.join(argv)}: {error}") from error
    if result.returncode != 0:
        raise NetnsError(
            f"{' '.join(argv)} exited with {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


def _namespaces() -> list[str]:
    """Names of the network namespaces ``ip netns`` knows."""
    # `ip netns list` prints "name" or "name (id: 3)", one per line.
    return [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Delete namespaces left by :class:`TwoHosts` owners that no longer run; return them.

    Only names of the form ``<prefix>-<pid>-<n>-<label>`` whose ``<pid>`` is not a running
    process are deleted (a PID reused by an unrelated process keeps its namespaces: being
    unsure, this errs on the side of leaving them). No process is signalled.
    """
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)-\d+-[ab]\d*$")
    removed = []
    for name in _namespaces():
        match = pattern.match(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(NetnsError):
            _run(["ip", "netns", "delete", name])
            removed.append(name)
    return removed


def _own_sysctl(key: str, value: str | None = None) -> str:
    """Read (or set) a sysctl of the caller's own network namespace, via /proc/sys."""
    path = f"/proc/sys/{key}"
    if value is not None:
        with open(path, "w") as file:
            file.write(value)
    with open(path) as file:
        return file.read().strip()


@functools.cache
def netns_available() -> str | None:
    """``None`` when :class:`TwoHosts` works here, or the reason it does not.

    Checks the platform, root, the ``ip`` (iproute2) and ``nft`` (nftables) commands, and
    then really builds two hosts and installs an nftables table in one: a container
    without ``CAP_SYS_ADMIN`` fails there. The answer is cached for the process. Meant for
    ``pytest.skip(reason)``.
    """
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux-only (this is {sys.platform})"
    if os.geteuid() != 0:
        return "network namespaces and nftables need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    for command, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(command) is None:
            return f"the {command!r} command is missing (install the {package} package)"
    try:
        with TwoHosts() as hosts:
            hosts.nft(hosts.a, f"table inet {_BLACKHOLE_TABLE} {{ }}")
    except (NetnsError, OSError) as error:
        return f"cannot build network namespaces here: {error}"
    return None


# ------------------------------------------------------------------------- processes


@final
class HostProcess:
    """A process running inside one host, printing JSON lines (one object per line).

    Every line of its stdout is parsed as JSON as it arrives (a line that is not a JSON
    object is kept as ``{"event": "output", "line": ...}``) and kept in order;
    :meth:`wait_for` waits for lines with a given ``"event"``. Messages are never consumed:
    waiting twice for the same event finds the same line, so put an id in commands and
    match on it (``where``). Its stderr goes to a temporary file, shown by
    :meth:`stderr_tail` and in every error. Signals go to its own PID only.
    """

    def __init__(self, argv: Sequence[str], host: Host) -> None:
        self.argv = list(argv)
        self.host = host
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._process = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._messages: list[dict[str, Any]] = []
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(
            target=self._read, name=f"HostProcess-{self._process.pid}", daemon=True
        )
        self._reader.start()

    def __repr__(self) -> str:
        return f"<HostProcess {self.pid} on {self.host.namespace}: {' '.join(self.argv[4:])}>"

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    # ------------------------------------------------------------------ output

    def _read(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            for raw in stdout:
                line = raw.decode(errors="replace").strip()
                if line:
                    self._append(line)
        except (OSError, ValueError):
            pass  # the pipe was closed under us by close(): the output has ended
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def _append(self, line: str) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            message = {"event": "output", "line": line}
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    def messages(self, event: str | None = None) -> list[dict[str, Any]]:
        """A snapshot of the messages received so far (those with ``event``, if given)."""
        with self._changed:
            return [m for m in self._messages if event is None or m.get("event") == event]

    def wait_for(
        self,
        event: str,
        within: float,
        *,
        count: int = 1,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` messages with this ``event`` (and ``where``) have arrived.

        Returns the first ``count`` of them. Raises ``TimeoutError`` after ``within``
        seconds, and :class:`ProcessEndedError` if the process ends its output first; both
        say what did arrive and end with the tail of its stderr.
        """
        deadline = time.monotonic() + within
        with self._changed:
            while True:
                found = [
                    m
                    for m in self._messages
                    if m.get("event") == event and (where is None or where(m))
                ]
                if len(found) >= count:
                    return found[:count]
                if event != "error" and any(m.get("event") == "error" for m in self._messages):
                    raise ProcessEndedError(self._explain(f"reported an error before {event!r}"))
                remaining = deadline - time.monotonic()
                if self._ended:
                    raise ProcessEndedError(
                        self._explain(f"ended with {len(found)}/{count} {event!r} messages")
                    )
                if remaining <= 0:
                    raise TimeoutError(
                        self._explain(f"{len(found)}/{count} {event!r} messages in {within} s")
                    )
                self._changed.wait(remaining)

    def _explain(self, what: str) -> str:
        recent = [m.get("event") for m in self._messages[-8:]]
        errors = [m for m in self._messages if m.get("event") == "error"]
        return (
            f"{self!r}: {what}; last events {recent}; errors {errors}; "
            f"stderr: {self.stderr_tail()!r}"
        )

    def stderr_tail(self, size: int = 2000) -> str:
        """The last ``size`` bytes of its stderr, decoded."""
        try:
            self._stderr.seek(0, os.SEEK_END)
            end = self._stderr.tell()
            self._stderr.seek(max(0, end - size))
            return self._stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    # ------------------------------------------------------------------ input and signals

    def send(self, message: Mapping[str, Any]) -> None:
        """Write ``message`` to its stdin as one JSON line."""
        stdin = self._process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(message).encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, ValueError) as error:
            raise ProcessEndedError(self._explain(f"cannot take {message!r}")) from error

    def signal(self, signum: int) -> None:
        """Send ``signum`` to this process, by its PID, unless it has been reaped."""
        if self._process.poll() is None:  # not reaped, so the PID is still its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signum)

    def freeze(self) -> None:
        """SIGSTOP: the process stops; its kernel keeps answering TCP for it."""
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM (which a Python process without a handler dies of at once)."""
        self.signal(signal.SIGTERM)

    def close(self) -> None:
        """Continue and kill it (by PID) if it still runs, reap it, close its pipes."""
        if self._process.poll() is None:
            self.thaw()  # a stopped process must not be left behind stopped
            self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(10)
        self._reader.join(5)  # the pipe ends with the process: read to its end first
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()


# ------------------------------------------------------------------------- the hosts


@final
class TwoHosts:
    """Two network namespaces joined by a veth pair: host ``a`` and host ``b``.

    Use it as a context manager (or call :meth:`start` and, always, :meth:`close`). See the
    module docstring for what is built. ``prefix`` starts the namespace names; ``subnet``
    (1-254) is the third octet of ``198.18.<subnet>.0/24``, by default a different one for
    each instance made by this process (namespaces are isolated from each other anyway).
    """

    def __init__(self, *, prefix: str = DEFAULT_PREFIX, subnet: int | None = None) -> None:
        serial = next(_serial)
        self._base = f"{prefix}-{os.getpid()}-{serial}"
        self._prefix = prefix
        octet = subnet if subnet is not None else serial % 254 + 1
        if not 1 <= octet <= 254:
            raise ValueError(f"subnet must be 1-254, got {octet}")
        self._hosts = {
            "a": Host("a", f"{self._base}-a", f"198.18.{octet}.1", f"02:00:c6:12:{octet:02x}:01"),
            "b": Host("b", f"{self._base}-b", f"198.18.{octet}.2", f"02:00:c6:12:{octet:02x}:02"),
        }
        self._created: list[str] = []  # every namespace made, deleted at close
        self._processes: list[HostProcess] = []
        self._reboots = 0
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        a, b = self.a, self.b
        return f"<TwoHosts {a.namespace} {a.address} <-> {b.namespace} {b.address}>"

    @property
    def a(self) -> Host:
        """Host a (``198.18.<k>.1``): in the fault suite, the observer."""
        return self._hosts["a"]

    @property
    def b(self) -> Host:
        """Host b (``198.18.<k>.2``): in the fault suite, the peer; :meth:`reboot` replaces it."""
        return self._hosts["b"]

    def other(self, host: Host) -> Host:
        return self.b if host.label == "a" else self.a

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> TwoHosts:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Build both hosts and the wire; on any failure, tear down what was built."""
        if self._started:
            raise NetnsError(f"{self!r} was already started")
        self._started = True
        remove_stale_namespaces(self._prefix)
        try:
            for host in self._hosts.values():
                self._add_namespace(host.namespace)
            a, b = self.a, self.b
            _run(
                ["ip", "link", "add", INTERFACE, "netns", a.namespace, "address", a.mac,
                 "type", "veth",
                 "peer", "name", INTERFACE, "netns", b.namespace, "address", b.mac]
            )  # fmt: skip
            self._configure(a)
            self._configure(b)
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, name: str) -> None:
        self._created.append(name)  # before: a half-made namespace is deleted too
        _run(["ip", "netns", "add", name])

    def _configure(self, host: Host) -> None:
        """Address, links up, and a static neighbour entry for the other host."""
        other = self.other(host)
        commands = [
            "link set lo up",
            f"addr add {host.address}/24 dev {INTERFACE}",
            f"link set {INTERFACE} up",
            f"neigh replace {other.address} lladdr {other.mac} dev {INTERFACE} nud permanent",
        ]
        _run(["ip", "-n", host.namespace, "-batch", "-"], stdin="\n".join(commands) + "\n")

    def close(self) -> None:
        """Kill every process started here (by PID), then delete the namespaces.

        Idempotent. Never raises for a namespace that is already gone; raises
        :class:`NetnsError` at the end if a namespace could not be deleted.
        """
        if self._closed:
            return
        self._closed = True
        for process in reversed(self._processes):
            process.close()
        self._processes.clear()
        failures = []
        for name in reversed(self._created):
            try:
                self._delete_namespace(name)
            except NetnsError as error:
                failures.append(str(error))
        self._created.clear()
        if failures:
            raise NetnsError("; ".join(failures))

    def _delete_namespace(self, name: str) -> None:
        if name not in _namespaces():
            return
        # Only processes started through this object (and their children) can be in it.
        for pid in self._pids_in(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        _run(["ip", "netns", "delete", name])

    def _pids_in(self, name: str) -> list[int]:
        try:
            output = _run(["ip", "netns", "pids", name])
        except NetnsError:
            return []
        return [int(field) for field in output.split() if field.isdigit()]

    # ------------------------------------------------------------------ processes

    def argv(self, host: Host, *command: str) -> list[str]:
        """The argv that runs ``command`` in ``host``: ``ip netns exec <namespace> ...``."""
        return ["ip", "netns", "exec", host.namespace, *command]

    def run(self, host: Host, *command: str, stdin: str | None = None) -> str:
        """Run a short command in ``host`` (bounded by 15 s); its stdout."""
        self._check_open()
        return _run(self.argv(host, *command), stdin=stdin)

    def spawn(self, host: Host, *command: str) -> HostProcess:
        """Start ``command`` in ``host``; it is killed (by PID) at :meth:`close` at the latest."""
        self._check_open()
        process = HostProcess(self.argv(host, *command), host)
        self._processes.append(process)
        return process

    def _check_open(self) -> None:
        if not self._started or self._closed:
            raise NetnsError(f"{self!r} is not running (use it as a context manager)")

    # ------------------------------------------------------------------ faults

    def nft(self, host: Host, ruleset: str) -> None:
        """Load an nftables ruleset (``nft -f -`` syntax) in ``host``, atomically."""
        self.run(host, "nft", "-f", "-", stdin=ruleset)

    def _replace_table(self, host: Host, table: str, body: str) -> None:
        # add + delete + define in one transaction: replaces the table whether or not it
        # existed, and the kernel never sees a moment with half of it.
        reset = f"add table inet {table}\ndelete table inet {table}\n"
        self.nft(host, f"{reset}table inet {table} {{\n{body}\n}}\n")

    def _remove_table(self, host: Host, table: str) -> None:
        self.nft(host, f"add table inet {table}\ndelete table inet {table}\n")

    def blackhole(self) -> None:
        """Drop every IP packet between the hosts, both ways (a pulled cable, a dead host).

        Each host drops what arrives from the other (``prerouting``, before connection
        tracking), so senders see silence, never a local error; ARP is left alone (and
        not needed: the neighbour entries are static). Nothing undoes it: build new hosts.
        """
        for host in (self.b, self.a):
            body = (
                "  chain arrive {\n"
                "    type filter hook prerouting priority raw; policy accept;\n"
                f"    ip saddr {self.other(host).address} drop\n"
                "  }"
            )
            self._replace_table(host, _BLACKHOLE_TABLE, body)

    def lose(self, percent: int) -> None:
        """Drop ``percent`` % of the IP packets each way, at random (``numgen random``).

        Every packet is dropped or not independently (no bursts, no correlation), on
        arrival at the other host. ``lose(0)`` removes the loss.
        """
        if not (isinstance(percent, int) and 0 <= percent <= 100):
            raise ValueError(f"percent must be a whole number 0-100, got {percent!r}")
        for host in (self.b, self.a):
            if percent == 0:
                self._remove_table(host, _LOSS_TABLE)
                continue
            body = (
                "  chain arrive {\n"
                "    type filter hook prerouting priority raw; policy accept;\n"
                f"    ip saddr {self.other(host).address} numgen random mod 100 < {percent} drop\n"
                "  }"
            )
            self._replace_table(host, _LOSS_TABLE, body)

    def drop_outgoing(self, percent: int) -> None:
        """Drop ``percent`` % of the IP packets each host itself sends to the other, at random,
        in its own ``output`` hook: a local drop (host firewall, rate limit, a full
        conntrack table), which the sending TCP sees as a failed transmit (``EPERM``), not
        as loss on the wire. ``drop_outgoing(0)`` removes it."""
        if not (isinstance(percent, int) and 0 <= percent <= 100):
            raise ValueError(f"percent must be a whole number 0-100, got {percent!r}")
        for host in (self.b, self.a):
            if percent == 0:
                self._remove_table(host, _LOCAL_DROP_TABLE)
                continue
            body = (
                "  chain leave {\n"
                "    type filter hook output priority filter; policy accept;\n"
                f"    ip daddr {self.other(host).address} numgen random mod 100 < {percent} drop\n"
                "  }"
            )
            self._replace_table(host, _LOCAL_DROP_TABLE, body)

    def firewall(self, host: Host, established_timeout: int) -> None:
        """Make ``host`` a stateful firewall that forgets a TCP flow idle for this many seconds.

        Connection tracking in ``host`` with ``nf_conntrack_tcp_timeout_established`` set
        (in that namespace only: the sysctl is per network namespace, and this checks that
        the caller's value did not move) and, both ways (``input`` and ``output``): packets
        of known flows pass; packets that are not a SYN and belong to no known flow are
        dropped (``ct state invalid``, and ``ct state new`` without SYN: a flow Linux would
        otherwise pick up mid-stream). Install it *before* the connections to be tracked
        are opened. Like any middlebox, it forgets a flow that carried no packet for
        ``established_timeout`` s, and from then on drops everything of it, both ways.
        """
        if not (isinstance(established_timeout, int) and established_timeout >= 1):
            raise ValueError(
                f"established_timeout must be whole seconds >= 1, got {established_timeout!r}"
            )
        rules = (
            "    ct state established,related accept\n"
            "    ct state invalid drop\n"
            "    tcp flags & (fin|syn|rst|ack) != syn ct state new drop\n"
        )
        body = "\n".join(
            f"  chain {hook} {{\n    type filter hook {hook} priority filter; policy accept;\n"
            f"{rules}  }}"
            for hook in ("input", "output")
        )
        self._replace_table(host, _FIREWALL_TABLE, body)  # loads conntrack in the namespace
        before = _own_sysctl(_CONNTRACK_TIMEOUT)
        key = _CONNTRACK_TIMEOUT.replace("/", ".")
        self.run(host, "sysctl", "-q", "-w", f"{key}={established_timeout}")
        inside = self.run(host, "sysctl", "-n", key).strip()
        after = _own_sysctl(_CONNTRACK_TIMEOUT)
        if after != before:
            with contextlib.suppress(OSError):
                _own_sysctl(_CONNTRACK_TIMEOUT, before)
            raise NetnsError(
                f"{key} is not per network namespace on this kernel: setting it in "
                f"{host.namespace} changed it for the caller too ({before} -> {after}; restored)"
            )
        if inside != str(established_timeout):
            raise NetnsError(f"{key} reads {inside} in {host.namespace}, not {established_timeout}")

    def reboot(self) -> Host:
        """Crash host b and bring it back with a fresh network stack; the new host b.

        The wire (b's end of the veth, with its MAC) moves into a new namespace first, so
        nothing of the old stack reaches host a from then on: no FIN, no RST, as when the
        power goes. The new namespace gets the same address at once. Then every process
        started in the old host b is killed by its PID (a reboot ends them all) and the
        old namespace is deleted, with every socket in it. To host a, the peer went silent
        and came back knowing nothing of its connections: the next segment host a sends
        on one of them is answered with a RST. The old host's firewall or blackhole rules
        are gone with it (host a's are kept).
        """
        self._check_open()
        old = self.b
        self._reboots += 1
        new = Host("b", f"{self._base}-b{self._reboots}", old.address, old.mac)
        self._add_namespace(new.namespace)
        _run(["ip", "-n", old.namespace, "link", "set", INTERFACE, "netns", new.namespace])
        self._hosts["b"] = new
        self._configure(new)
        for process in [p for p in self._processes if p.host.namespace == old.namespace]:
            process.close()
            self._processes.remove(process)
        self._delete_namespace(old.namespace)
        self._created.remove(old.namespace)
        return new
